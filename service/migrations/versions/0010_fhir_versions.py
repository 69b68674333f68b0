"""later versions of received resources (FHIR corrected / amended / entered-in-error), and
CDS Hooks card feedback

Revision ID: 0010_fhir_versions
Revises: 0008_audit_checkpoints
Create Date: 2026-12-08 03:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_fhir_versions"
down_revision = "0008_audit_checkpoints"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Insert-only: version 1 stays in ingested_resources, each replacing resend adds a row here.
    op.create_table(
        "resource_versions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "resource_id", sa.String(length=36), sa.ForeignKey("ingested_resources.id"), nullable=False
        ),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_by", sa.String(length=64), nullable=False),
        sa.UniqueConstraint("resource_id", "version_id"),
    )
    op.create_index("ix_resource_versions_resource_id", "resource_versions", ["resource_id"])
    # CDS Hooks 2.0 feedback (accepted / overridden with a reason), insert-only.
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("card", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=False),
        sa.Column("override_reason", sa.JSON(), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_by", sa.String(length=64), nullable=False),
        sa.Column("organisation", sa.String(length=16), nullable=True),
    )
    op.create_index("ix_cds_feedback_card", "cds_feedback", ["card"])


def downgrade() -> None:
    op.drop_index("ix_cds_feedback_card", table_name="cds_feedback")
    op.drop_table("cds_feedback")
    op.drop_index("ix_resource_versions_resource_id", table_name="resource_versions")
    op.drop_table("resource_versions")
