"""the source (rule, model, both) of the level a worklist item holds

A held level (a re-score may not lower it, migration 0009) must name where IT came from, not
where the newest, lower assessment's level came from: a red held from a model alert read
"red, from nothing" once the next assessment was green. Older items have no value and fall
back to the newest assessment's source, as before.

Revision ID: 0015_peak_level_source
Revises: 0013b_questionnaire_tasks
Create Date: 2026-12-08 05:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_peak_level_source"
down_revision = "0013b_questionnaire_tasks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("worklist_items") as batch:
        batch.add_column(sa.Column("peak_level_source", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("worklist_items") as batch:
        batch.drop_column("peak_level_source")
