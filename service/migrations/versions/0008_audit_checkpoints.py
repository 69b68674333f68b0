"""web sessions on the server, so sign-out ends a session (issue 12, finding 8)

The revision id was assigned for the audit-checkpoint work of the same issue. The checkpoints
themselves are deliberately NOT in the database (an administrator of the database must not be
able to rewrite them): they go to an append-only file (service/security/checkpoints.py). What
that work needed in the schema is the server-side session table.

Revision ID: 0008_audit_checkpoints
Revises: 0009_worklist_history
Create Date: 2026-12-08 03:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_audit_checkpoints"
down_revision = "0009_worklist_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(length=64), primary_key=True),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_web_sessions_subject", "web_sessions", ["subject"])
    op.create_index("ix_web_sessions_expires_at", "web_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_web_sessions_expires_at", table_name="web_sessions")
    op.drop_index("ix_web_sessions_subject", table_name="web_sessions")
    op.drop_table("web_sessions")
