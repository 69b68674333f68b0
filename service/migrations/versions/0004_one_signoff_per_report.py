"""one sign-off per drift report, enforced by the database

Revision ID: 0004_one_signoff_per_report
Revises: 0003_security_audit_append_only
Create Date: 2026-11-25 19:00:00
"""

from alembic import op

revision = "0004_one_signoff_per_report"
down_revision = "0003_security_audit_append_only"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A sign-off is an immutable record entry; the service checks too, but two replicas racing
    # must not both succeed.
    op.create_index("uq_drift_signoffs_report", "drift_signoffs", ["report_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_drift_signoffs_report", table_name="drift_signoffs")
