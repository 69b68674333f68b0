"""questionnaires sent to patients as Tasks (issue 18, part 2)

A second migration of the same issue: 0013_patient_side had already landed and others
(0006_org_boundaries, then 0014_monthly_partitions) were chained after it, so the table is added
here rather than by editing a migration that databases may already have applied.

Revision ID: 0013b_questionnaire_tasks
Revises: 0014_monthly_partitions
Create Date: 2026-12-08 05:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013b_questionnaire_tasks"
down_revision = "0014_monthly_partitions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "questionnaire_tasks",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("patient_id", sa.String(length=36), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("questionnaire", sa.String(length=80), nullable=False),
        sa.Column("questionnaire_url", sa.String(length=300), nullable=False),
        sa.Column("questionnaire_version", sa.String(length=32), nullable=False),
        sa.Column("pathway_id", sa.String(length=64), nullable=False),
        sa.Column("pathway_version", sa.Integer(), nullable=False),
        sa.Column("organisation", sa.String(length=16), nullable=False),
        sa.Column("unit", sa.String(length=64), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("patient_id", "questionnaire", "opens_at"),
    )
    op.create_index("ix_questionnaire_tasks_patient_id", "questionnaire_tasks", ["patient_id"])
    op.create_index(
        "ix_questionnaire_tasks_status_closes", "questionnaire_tasks", ["status", "closes_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_questionnaire_tasks_status_closes", table_name="questionnaire_tasks")
    op.drop_index("ix_questionnaire_tasks_patient_id", table_name="questionnaire_tasks")
    op.drop_table("questionnaire_tasks")
