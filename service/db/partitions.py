"""Monthly range partitions on PostgreSQL for the tables that grow for years (migration 0014).

``readings`` is split by ``effective_s`` (the clinical time, epoch seconds), ``assessments`` by
``created_at`` and ``audit_log`` by ``at``. Each has one partition per calendar month (UTC), named
``<table>_yYYYYmMM``, and a ``<table>_default`` partition, so an insert never fails for lack of
a partition. `triage storage partitions` (or the in-process schedule) creates the coming months
ahead of time; retention drops whole months that are past their period (service/security/
retention.py). SQLite has no partitioning: everything here is PostgreSQL only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class PartitionedTable:
    name: str
    key: str  # the partition key column
    epoch_seconds: bool  # the key holds epoch seconds (else a timestamptz)


PARTITIONED_TABLES = (
    PartitionedTable("readings", "effective_s", epoch_seconds=True),
    PartitionedTable("assessments", "created_at", epoch_seconds=False),
    PartitionedTable("audit_log", "at", epoch_seconds=False),
)
BY_NAME = {t.name: t for t in PARTITIONED_TABLES}
# The append-only trigger function of migration 0003: TRUNCATE triggers do not fire on a
# partition truncated directly, so each audit partition carries its own.
AUDIT_TRUNCATE_TRIGGER = (
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {partition} "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
)
# Replicas that run the daily job together take turns ("part").
_LOCK = 0x7061_7274
_MONTH_SUFFIX = re.compile(r"_y(\d{4})m(\d{2})$")


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_y{month.year:04d}m{month.month:02d}"


def partition_month(table: str, partition: str) -> date | None:
    """The month a partition holds, from its name (None for the default partition)."""
    match = _MONTH_SUFFIX.search(partition)
    if not partition.startswith(f"{table}_y") or match is None:
        return None
    return date(int(match.group(1)), int(match.group(2)), 1)


def bound(table: PartitionedTable, month: date) -> str:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    if table.epoch_seconds:
        return str(int(start.timestamp()))
    return f"'{start.isoformat()}'"


def is_partitioned(conn: Connection, table: str) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:table)"), {"table": table}
    ).scalar()
    return kind == "p"


def partitions(conn: Connection, table: str) -> list[str]:
    """The partitions of ``table`` (names), oldest month first, the default last."""
    names = conn.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:table)"
        ),
        {"table": table},
    ).all()
    return sorted(names, key=lambda n: (partition_month(table, n) or date.max, n))


def create_month_partition(conn: Connection, table_name: str, month: date) -> str | None:
    """Create the month's partition; returns its name, or None when it already exists.

    A month whose rows already went to the default partition cannot get its own partition
    without moving them (PostgreSQL refuses the attach); that is reported, not forced.
    """
    table = BY_NAME[table_name]
    name = partition_name(table.name, month)
    if conn.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar() is not None:
        return None
    low, high = bound(table, month), bound(table, add_months(month, 1))
    default = f"{table.name}_default"
    in_default = conn.execute(
        # Identifiers and bounds come from PARTITIONED_TABLES and dates, never from input.
        text(f"SELECT count(*) FROM {default} WHERE {table.key} >= {low} AND {table.key} < {high}")  # noqa: S608
    ).scalar()
    if in_default:
        raise RuntimeError(
            f"{default} holds {in_default} rows for {month:%Y-%m}: move them before creating {name}"
        )
    conn.execute(
        text(f"CREATE TABLE {name} PARTITION OF {table.name} FOR VALUES FROM ({low}) TO ({high})")
    )
    if table.name == "audit_log":
        conn.execute(text(AUDIT_TRUNCATE_TRIGGER.format(partition=name)))
    return name


def create_default_partition(conn: Connection, table_name: str) -> None:
    name = f"{table_name}_default"
    conn.execute(text(f"CREATE TABLE {name} PARTITION OF {table_name} DEFAULT"))
    if table_name == "audit_log":
        conn.execute(text(AUDIT_TRUNCATE_TRIGGER.format(partition=name)))


def ensure_partitions(
    conn: Connection, now: datetime | None = None, months_ahead: int = 3
) -> list[str]:
    """Create this month's and the next ``months_ahead`` months' partitions where missing."""
    if conn.dialect.name != "postgresql":
        return []
    first = month_start(now or datetime.now(UTC))
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    created = []
    for table in PARTITIONED_TABLES:
        if not is_partitioned(conn, table.name):
            continue
        for offset in range(months_ahead + 1):
            name = create_month_partition(conn, table.name, add_months(first, offset))
            if name:
                created.append(name)
    return created


def partitions_before(conn: Connection, table: str, cutoff: datetime) -> list[str]:
    """Month partitions of ``table`` whose every row is older than ``cutoff``."""
    return [
        name
        for name in partitions(conn, table)
        if (month := partition_month(table, name)) is not None
        and datetime(*add_months(month, 1).timetuple()[:3], tzinfo=UTC) <= cutoff
    ]


def drop_partition(conn: Connection, table: str, partition: str) -> None:
    """Detach and drop one month: the whole partition goes, no row deletes (no dead tuples)."""
    if partition_month(table, partition) is None:
        raise ValueError(f"{partition} is not a month partition of {table}")
    conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {partition}"))
    conn.execute(text(f"DROP TABLE {partition}"))
