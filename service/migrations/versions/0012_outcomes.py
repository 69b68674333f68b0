"""outcomes: event type and the recording organisation

Revision ID: 0012_outcomes
Revises: 0004_one_signoff_per_report
Create Date: 2026-12-08 03:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_outcomes"
down_revision = "0004_one_signoff_per_report"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        # What happened ("none" = a follow-up that found no deterioration); older rows only
        # said yes or no, so they become a generic deterioration or "none".
        batch_op.add_column(
            sa.Column(
                "event_type", sa.String(length=32), nullable=False, server_default="deterioration"
            )
        )
        # The organisation that owned the patient when the outcome was recorded: recalibration
        # and performance monitoring are per site.
        batch_op.add_column(sa.Column("organisation", sa.String(length=16), nullable=True))
    op.execute("UPDATE outcomes SET event_type = 'none' WHERE deteriorated = false")
    op.execute(
        "UPDATE outcomes SET organisation = "
        "(SELECT patients.organisation FROM patients WHERE patients.id = outcomes.patient_id)"
    )
    op.create_index("ix_outcomes_organisation_occurred_at", "outcomes", ["organisation", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_outcomes_organisation_occurred_at", table_name="outcomes")
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.drop_column("organisation")
        batch_op.drop_column("event_type")
