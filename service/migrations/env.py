"""Alembic environment: migrations run from service.db.engine.migrate (or `alembic` with -x url=)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from service.db.tables import Base

# The migration lock's key in PostgreSQL's single-bigint advisory space ("migr").
_LOCK = 0x6D69_6772
config = context.config
url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
    "sqlalchemy.url"
)


def run() -> None:
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or set sqlalchemy.url")
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Replicas that start together each run `migrate`: the first upgrades, the
                # others wait here and then find the schema at head (transactional DDL).
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
            context.run_migrations()
    engine.dispose()


run()
