"""Persistence: SQLAlchemy 2 tables, engine/session setup, Alembic migrations."""
