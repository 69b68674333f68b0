"""patient side and secondary use: bulk export jobs, their files and the release record

Revision ID: 0013_patient_side
Revises: 0005_replicas
Create Date: 2026-12-08 04:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_patient_side"
down_revision = "0005_replicas"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "export_jobs",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("organisations", sa.JSON(), nullable=False),
        sa.Column("units", sa.JSON(), nullable=True),
        sa.Column("request_url", sa.Text(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.String(length=120), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("manifest", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_export_jobs_requested_by", "export_jobs", ["requested_by"])
    op.create_table(
        "export_files",
        sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(length=36), sa.ForeignKey("export_jobs.id"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.UniqueConstraint("job_id", "name"),
    )
    op.create_index("ix_export_files_job_id", "export_files", ["job_id"])
    op.create_table(
        "data_releases",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column(
            "job_id",
            sa.String(length=36),
            sa.ForeignKey("export_jobs.id"),
            nullable=False,
            unique=True,
        ),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_by", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("organisation", sa.String(length=16), nullable=True),
        sa.Column("recipient", sa.String(length=120), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.String(length=32), nullable=False),
        sa.Column("legal_basis_reference", sa.String(length=120), nullable=True),
        sa.Column("contents", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
    )
    op.create_index("ix_data_releases_released_at", "data_releases", ["released_at"])
    op.create_index("ix_data_releases_organisation", "data_releases", ["organisation"])


def downgrade() -> None:
    op.drop_index("ix_data_releases_organisation", table_name="data_releases")
    op.drop_index("ix_data_releases_released_at", table_name="data_releases")
    op.drop_table("data_releases")
    op.drop_index("ix_export_files_job_id", table_name="export_files")
    op.drop_table("export_files")
    op.drop_index("ix_export_jobs_requested_by", table_name="export_jobs")
    op.drop_table("export_jobs")
