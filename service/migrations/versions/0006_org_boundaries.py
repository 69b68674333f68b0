"""organisation boundaries: transfers of a patient's follow-up and time-limited read grants

Revision ID: 0006_org_boundaries
Revises: 0013_patient_side
Create Date: 2026-12-08 04:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_org_boundaries"
down_revision = "0013_patient_side"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_transfers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("from_organisation", sa.String(length=16), nullable=False),
        sa.Column("from_unit", sa.String(length=64), nullable=False),
        sa.Column("to_organisation", sa.String(length=16), nullable=False),
        sa.Column("to_unit", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.String(length=200), nullable=False),
        sa.Column("transferred_by", sa.String(length=64), nullable=False),
        sa.Column("transferred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_patient_transfers_patient_id"), "patient_transfers", ["patient_id"]
    )
    op.create_table(
        "patient_access_grants",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("grantee_organisation", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.String(length=200), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted_by", sa.String(length=64), nullable=False),
        sa.Column("granted_by_organisation", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_patient_access_grants_patient_id"), "patient_access_grants", ["patient_id"]
    )
    op.create_index(
        "ix_patient_access_grants_grantee",
        "patient_access_grants",
        ["grantee_organisation", "valid_until"],
    )


def downgrade() -> None:
    op.drop_index("ix_patient_access_grants_grantee", table_name="patient_access_grants")
    op.drop_index(op.f("ix_patient_access_grants_patient_id"), table_name="patient_access_grants")
    op.drop_table("patient_access_grants")
    op.drop_index(op.f("ix_patient_transfers_patient_id"), table_name="patient_transfers")
    op.drop_table("patient_transfers")
