"""readings, assessments and audit_log are range-partitioned by month on PostgreSQL

Each table is rebuilt as a partitioned parent with one partition per month of its existing data
(through three months ahead) and a DEFAULT partition, rows are copied, names swapped, and the
indexes, foreign keys, sequence ownership and audit triggers recreated on the new parent.
PostgreSQL requires every unique index on a partitioned table to contain the partition key, so:

- the primary keys become (id, effective_s), (id, created_at) and (seq, at);
- uq_readings_resource_component becomes (resource_id, name, effective_s): every reading of one
  stored resource carries that resource's one effective time, so it still allows one reading
  per resource component;
- audit_log.seq is no longer unique on its own: appends are serialised by an advisory lock
  (service/security/audit.py) and `triage audit verify` refuses a repeated or missing seq;
- worklist_items.assessment_id can no longer be a foreign key (it would need a unique index on
  assessments.id alone); a trigger refuses an item that points at no assessment instead.

SQLite has no table partitioning, and a single-hospital SQLite store does not grow to the sizes
this is for: on SQLite the migration does nothing.

Revision ID: 0014_monthly_partitions
Revises: 0006_org_boundaries
Create Date: 2026-12-08 04:50:00
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from alembic import op
from sqlalchemy import Connection, text

from service.db.partitions import (
    AUDIT_TRUNCATE_TRIGGER,
    PARTITIONED_TABLES,
    PartitionedTable,
    add_months,
    bound,
    month_start,
    partition_name,
)

revision = "0014_monthly_partitions"
down_revision = "0006_org_boundaries"
branch_labels = None
depends_on = None

MONTHS_AHEAD = 3
MAX_MONTHS = 240  # older rows than 20 years before the newest go to the default partition
PRIMARY_KEYS = {"readings": "id", "assessments": "id", "audit_log": "seq"}
SERIAL_COLUMNS = {"readings": "id", "audit_log": "seq"}

ASSESSMENT_EXISTS_FUNCTION = """
CREATE OR REPLACE FUNCTION worklist_items_assessment_exists() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM assessments WHERE id = NEW.assessment_id) THEN
        RAISE EXCEPTION 'worklist_items.assessment_id % names no assessment', NEW.assessment_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$
"""


def _months(conn: Connection, table: PartitionedTable, source: str) -> list[date]:
    key = f"to_timestamp({table.key})" if table.epoch_seconds else table.key
    low, high = conn.execute(text(f"SELECT min({key}), max({key}) FROM {source}")).one()  # noqa: S608
    now = month_start(datetime.now(UTC))
    first = month_start(low) if low is not None else now
    last = max(month_start(high) if high is not None else now, add_months(now, MONTHS_AHEAD))
    first = max(first, add_months(last, -MAX_MONTHS))
    months = [first]
    while months[-1] < last:
        months.append(add_months(months[-1], 1))
    return months


def _index_definitions(conn: Connection, table: str) -> list[tuple[str, str, bool]]:
    """(name, definition, unique) of every index on ``table`` except its primary key."""
    return [
        (row.indexname, row.indexdef, row.indexdef.startswith("CREATE UNIQUE"))
        for row in conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = current_schema() AND tablename = :table "
                "AND indexname <> :pkey ORDER BY indexname"
            ),
            {"table": table, "pkey": f"{table}_pkey"},
        )
    ]


def _foreign_keys(conn: Connection, table: str) -> list[tuple[str, str]]:
    return [
        (row.conname, row.definition)
        for row in conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
                "WHERE conrelid = to_regclass(:table) AND contype = 'f' ORDER BY conname"
            ),
            {"table": table},
        )
    ]


def _sequence(conn: Connection, table: str) -> str | None:
    column = SERIAL_COLUMNS.get(table)
    if column is None:
        return None
    return conn.execute(
        text("SELECT pg_get_serial_sequence(:table, :column)"), {"table": table, "column": column}
    ).scalar()


def _rebuild(
    conn: Connection,
    table: PartitionedTable,
    *,
    partitioned: bool,
) -> None:
    """Copy ``table`` into a new (partitioned or plain) table of the same shape and swap names."""
    name, new = table.name, f"{table.name}_rebuilt"
    indexes = _index_definitions(conn, name)
    foreign_keys = _foreign_keys(conn, name)
    sequence = _sequence(conn, name)
    partition_clause = f" PARTITION BY RANGE ({table.key})" if partitioned else ""
    conn.execute(text(f"CREATE TABLE {new} (LIKE {name} INCLUDING DEFAULTS){partition_clause}"))
    if partitioned:
        for month in _months(conn, table, name):
            _create_partition_of(conn, new, table, month)
        conn.execute(text(f"CREATE TABLE {new}_default PARTITION OF {new} DEFAULT"))
    conn.execute(text(f"INSERT INTO {new} SELECT * FROM {name}"))  # noqa: S608
    if sequence:
        conn.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY NONE"))
    conn.execute(text(f"DROP TABLE {name}"))
    conn.execute(text(f"ALTER TABLE {new} RENAME TO {name}"))
    if partitioned:
        for partition in _child_names(conn, name):
            conn.execute(
                text(f"ALTER TABLE {partition} RENAME TO {partition.replace(new, name, 1)}")
            )
    if sequence:
        conn.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY {name}.{SERIAL_COLUMNS[name]}"))
    primary = [PRIMARY_KEYS[name], table.key] if partitioned else [PRIMARY_KEYS[name]]
    conn.execute(
        text(f"ALTER TABLE {name} ADD CONSTRAINT {name}_pkey PRIMARY KEY ({', '.join(primary)})")
    )
    for _index, definition, unique in indexes:
        conn.execute(
            text(_with_key(definition, table.key, add=partitioned) if unique else definition)
        )
    for constraint, definition in foreign_keys:
        conn.execute(text(f"ALTER TABLE {name} ADD CONSTRAINT {constraint} {definition}"))
    if name == "audit_log":
        _audit_triggers(conn, partitioned=partitioned)


def _create_partition_of(
    conn: Connection, parent: str, table: PartitionedTable, month: date
) -> None:
    low, high = bound(table, month), bound(table, add_months(month, 1))
    conn.execute(
        text(
            f"CREATE TABLE {partition_name(parent, month)} PARTITION OF {parent} "
            f"FOR VALUES FROM ({low}) TO ({high})"
        )
    )


def _child_names(conn: Connection, table: str) -> list[str]:
    return list(
        conn.scalars(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass(:table)"
            ),
            {"table": table},
        )
    )


def _with_key(definition: str, key: str, *, add: bool) -> str:
    """A unique index definition with the partition key appended (or removed again)."""
    columns = re.search(r"\(([^()]*)\)\s*$", definition)
    assert columns is not None, definition
    names = [c.strip() for c in columns.group(1).split(",")]
    if add and key not in names:
        names.append(key)
    if not add and key in names and len(names) > 1:
        names.remove(key)
    return definition[: columns.start()] + f"({', '.join(names)})"


def _audit_triggers(conn: Connection, *, partitioned: bool) -> None:
    """Migration 0003's append-only triggers, on the rebuilt audit_log (and each partition)."""
    conn.execute(
        text(
            "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    )
    conn.execute(
        text(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    )
    if partitioned:
        # A partition truncated directly does not fire its parent's TRUNCATE trigger.
        for partition in _child_names(conn, "audit_log"):
            conn.execute(text(AUDIT_TRUNCATE_TRIGGER.format(partition=partition)))


def _worklist_assessment_fk(conn: Connection) -> str | None:
    return conn.execute(
        text(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass('worklist_items') "
            "AND contype = 'f' AND confrelid = to_regclass('assessments')"
        )
    ).scalar()


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return  # SQLite: no partitioning (see the docstring)
    fk = _worklist_assessment_fk(conn)
    if fk:
        conn.execute(text(f"ALTER TABLE worklist_items DROP CONSTRAINT {fk}"))
    for table in PARTITIONED_TABLES:
        _rebuild(conn, table, partitioned=True)
    conn.execute(text(ASSESSMENT_EXISTS_FUNCTION))
    conn.execute(
        text(
            "CREATE TRIGGER worklist_items_assessment_exists "
            "BEFORE INSERT OR UPDATE OF assessment_id ON worklist_items "
            "FOR EACH ROW EXECUTE FUNCTION worklist_items_assessment_exists()"
        )
    )


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text("DROP TRIGGER IF EXISTS worklist_items_assessment_exists ON worklist_items"))
    conn.execute(text("DROP FUNCTION IF EXISTS worklist_items_assessment_exists()"))
    for table in PARTITIONED_TABLES:
        _rebuild(conn, table, partitioned=False)
    conn.execute(
        text(
            "ALTER TABLE worklist_items ADD CONSTRAINT worklist_items_assessment_id_fkey "
            "FOREIGN KEY (assessment_id) REFERENCES assessments (id)"
        )
    )
