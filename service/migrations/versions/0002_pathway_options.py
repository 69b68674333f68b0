"""patients.pathway_options; rule-set and pathway hashes wide enough for "sha256:<hex>"

Revision ID: 0002_pathway_options
Revises: 0001_initial
Create Date: 2026-11-25 18:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_pathway_options"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("pathway_options", sa.JSON(), nullable=False,
                                   server_default="{}"))
    with op.batch_alter_table("assessments") as batch:
        batch.alter_column("rule_set_hash", type_=sa.String(length=80),
                           existing_type=sa.String(length=64), existing_nullable=False)
    with op.batch_alter_table("pathway_versions") as batch:
        batch.alter_column("content_hash", type_=sa.String(length=80),
                           existing_type=sa.String(length=64), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("pathway_versions") as batch:
        batch.alter_column("content_hash", type_=sa.String(length=64),
                           existing_type=sa.String(length=80), existing_nullable=False)
    with op.batch_alter_table("assessments") as batch:
        batch.alter_column("rule_set_hash", type_=sa.String(length=64),
                           existing_type=sa.String(length=80), existing_nullable=False)
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("pathway_options")
