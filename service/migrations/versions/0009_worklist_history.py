"""worklist items hold their highest level until a person acts; escalation recipients; names

- worklist_items.peak_at / peak_assessment_id / peak_reasons: when and why the item reached the
  level it holds, so a card can say "was red at 07:02 for ...; now yellow" after a re-score
  that would have lowered it (only a clinician lowers a level).
- worklist_items.escalated_to and worklist_events.recipient: whom an escalation is for
  ("role:<role>", "unit:<unit>" or "hpr:<HPR number>").
- patients.display_name: the name clinicians work by (never logged).

Revision ID: 0009_worklist_history
Revises: 0012_outcomes
Create Date: 2026-12-08 03:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_worklist_history"
down_revision = "0012_outcomes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("worklist_items") as batch:
        batch.add_column(sa.Column("peak_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("peak_assessment_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("peak_reasons", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("escalated_to", sa.String(length=120), nullable=True))
    with op.batch_alter_table("worklist_events") as batch:
        batch.add_column(sa.Column("recipient", sa.String(length=120), nullable=True))
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("display_name", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("display_name")
    with op.batch_alter_table("worklist_events") as batch:
        batch.drop_column("recipient")
    with op.batch_alter_table("worklist_items") as batch:
        batch.drop_column("escalated_to")
        batch.drop_column("peak_reasons")
        batch.drop_column("peak_assessment_id")
        batch.drop_column("peak_at")
