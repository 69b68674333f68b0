"""pathway ownership and four-eyes publishing

A pathway version belongs to a scope: the regional template library (organisation NULL, owned
by admin), an organisation, or one unit of an organisation. ``needs_approval`` marks a version
that changes thresholds or levels: it scores no one until a second clinician approves it, which
is a separate insert-only record (``pathway_version_decisions``, one per version), so the version
row itself is never updated.

Revision ID: 0007_pathway_ownership
Revises: 0010_fhir_versions
Create Date: 2026-12-08 03:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_pathway_ownership"
down_revision = "0010_fhir_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pathway_versions") as batch:
        batch.add_column(sa.Column("organisation", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("unit", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("needs_approval", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("base_version", sa.Integer(), nullable=True))
        batch.create_index("ix_pathway_versions_scope", ["pathway_id", "organisation", "unit"])
    op.create_table(
        "pathway_version_decisions",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column(
            "pathway_version_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("pathway_versions.id"),
            nullable=False,
        ),
        sa.Column("pathway_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("organisation", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    # One decision per version, enforced by the database: two replicas racing to approve and to
    # reject the same proposal must not both succeed.
    op.create_index(
        "uq_pathway_version_decisions_version",
        "pathway_version_decisions",
        ["pathway_version_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index(
        "uq_pathway_version_decisions_version", table_name="pathway_version_decisions"
    )
    op.drop_table("pathway_version_decisions")
    with op.batch_alter_table("pathway_versions") as batch:
        batch.drop_index("ix_pathway_versions_scope")
        batch.drop_column("base_version")
        batch.drop_column("needs_approval")
        batch.drop_column("unit")
        batch.drop_column("organisation")
