"""replicas: the database enforces one active worklist item per patient and one reading per
resource component; scheduled jobs record their runs so each runs once per period

Revision ID: 0005_replicas
Revises: 0007_pathway_ownership
Create Date: 2026-12-08 03:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_replicas"
down_revision = "0007_pathway_ownership"
branch_labels = None
depends_on = None

ACTIVE = "state IN ('open', 'acknowledged', 'escalated')"


def upgrade() -> None:
    bind = op.get_bind()
    # Two replicas racing before this migration could open a second item for a patient. Keep the
    # most recently updated one; close the others as resolved by the system, with an event that
    # says why, so the index below can be built and nothing is silently lost.
    duplicates = bind.execute(
        sa.text(
            f"SELECT id, patient_id FROM worklist_items WHERE {ACTIVE} "
            "ORDER BY patient_id, updated_at DESC, id"
        )
    ).all()
    seen: set[str] = set()
    for item_id, patient_id in duplicates:
        if patient_id not in seen:
            seen.add(patient_id)
            continue
        bind.execute(
            sa.text(
                "UPDATE worklist_items SET state = 'resolved', resolved_by = 'system', "
                "resolved_at = CURRENT_TIMESTAMP WHERE id = :id"
            ),
            {"id": item_id},
        )
        bind.execute(
            sa.text(
                "INSERT INTO worklist_events (item_id, action, actor, at, note) VALUES "
                "(:id, 'resolve', 'system', CURRENT_TIMESTAMP, "
                "'duplicate active item closed by migration 0005 (one active item per patient)')"
            ),
            {"id": item_id},
        )
    op.create_index(
        "uq_worklist_one_active_per_patient",
        "worklist_items",
        ["patient_id"],
        unique=True,
        postgresql_where=sa.text(ACTIVE),
        sqlite_where=sa.text(ACTIVE),
    )
    # A resource component is stored once (a BP panel: one systolic, one diastolic).
    bind.execute(
        sa.text(
            "DELETE FROM readings WHERE id NOT IN "
            "(SELECT min(id) FROM readings GROUP BY resource_id, name)"
        )
    )
    op.create_index(
        "uq_readings_resource_component", "readings", ["resource_id", "name"], unique=True
    )


    op.create_table(
        "job_runs",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runner", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_runs")
    op.drop_index("uq_readings_resource_component", table_name="readings")
    op.drop_index("uq_worklist_one_active_per_patient", table_name="worklist_items")
