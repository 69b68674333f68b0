"""Retention: configurable periods per kind of data, a dry-run plan, and the one deletion we do.

Periods come from a JSON policy file the data controller owns (`triage audit retention --policy
retention.json`); every period defaults to "keep". Record entries (assessments, readings, received
resources, worklist history, audit rows) are only *counted* here: deleting them needs the
controller's decision and an export to the archive first (governance/retention.md), so this job
refuses to delete them. Delivered outbox messages are transport copies (the record copy is in
DIPS and in `assessments`) and are deleted when their period has passed.

On PostgreSQL, readings, assessments and audit rows are partitioned by month (migration 0014):
the report names the whole months past their period, and `drop_expired_partitions` removes them
a partition at a time (no row deletes, no table bloat), only inside `record_maintenance(reason)`,
the supervised run after the controller's decision and the export to the archive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.db import partitions
from service.db.tables import (
    Assessment,
    AuditEntry,
    IngestedResource,
    OutboxEntry,
    Reading,
    WorklistEvent,
)
from service.security.record_guards import RecordImmutable, maintenance_reason

# category -> (table, timestamp column, extra condition, may this job delete it?)
_CATEGORIES: dict[str, tuple[Any, Any, Any, bool]] = {
    "outbox_delivered": (
        OutboxEntry,
        OutboxEntry.created_at,
        OutboxEntry.state.in_(("delivered", "recorded")),
        True,
    ),
    "assessments": (Assessment, Assessment.created_at, None, False),
    "received_resources": (IngestedResource, IngestedResource.received_at, None, False),
    "readings": (Reading, Reading.effective_s, None, False),  # epoch seconds
    "worklist_events": (WorklistEvent, WorklistEvent.at, None, False),
    "audit_log": (AuditEntry, AuditEntry.at, None, False),
}


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep each kind of data; None keeps it (the default for all)."""

    outbox_delivered: int | None = None
    assessments: int | None = None
    received_resources: int | None = None
    readings: int | None = None
    worklist_events: int | None = None
    audit_log: int | None = None

    @classmethod
    def from_file(cls, path: Path) -> RetentionPolicy:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown retention categories: {sorted(unknown)}")
        for key, value in data.items():
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{key}: a period is a whole number of days ≥ 1, or null")
        return cls(**data)


@dataclass
class RetentionLine:
    category: str
    keep_days: int | None
    due: int
    deleted: int
    note: str
    partitions_due: list[str] = field(default_factory=list)  # whole months (PostgreSQL)


# Categories stored in monthly partitions on PostgreSQL. The audit log's are reported, not
# dropped: verifying the chain after its oldest months are gone needs a new anchor (the hash of
# the first kept row), which is not built yet (governance/retention.md).
PARTITIONED_CATEGORIES = {"readings": True, "assessments": True, "audit_log": False}


def _cutoff(category: str, now: datetime, days: int) -> Any:
    cutoff = now - timedelta(days=days)
    return int(cutoff.timestamp()) if category == "readings" else cutoff


def run_retention(
    session: Session, policy: RetentionPolicy, *, apply: bool = False, now: datetime | None = None
) -> list[RetentionLine]:
    """Count what is past its period; with ``apply``, delete what this job may delete."""
    now = now or datetime.now(UTC)
    lines = []
    for category, (table, stamp, condition, deletable) in _CATEGORIES.items():
        days = getattr(policy, category)
        if days is None:
            lines.append(RetentionLine(category, None, 0, 0, "kept (no period set)"))
            continue
        where = [stamp < _cutoff(category, now, days)]
        if condition is not None:
            where.append(condition)
        due = session.scalar(select(func.count()).select_from(table).where(*where)) or 0
        deleted = 0
        if deletable and apply and due:
            result: Any = session.execute(delete(table).where(*where))
            deleted = result.rowcount or 0  # a CursorResult for DML
        note = (
            "deleted"
            if deleted
            else "due"
            if deletable
            else "record entries: export to the archive and delete on the controller's "
            "decision; not deleted by this job"
        )
        due_partitions = _due_partitions(session, category, now - timedelta(days=days))
        if due_partitions:
            note += f"; whole months past the period: {', '.join(due_partitions)}"
        lines.append(RetentionLine(category, days, due, deleted, note, due_partitions))
    return lines


def _due_partitions(session: Session, category: str, cutoff: datetime) -> list[str]:
    if category not in PARTITIONED_CATEGORIES:
        return []
    conn = session.connection()
    if not partitions.is_partitioned(conn, category):
        return []
    return partitions.partitions_before(conn, category, cutoff)


def drop_expired_partitions(
    session: Session, policy: RetentionPolicy, *, now: datetime | None = None
) -> list[str]:
    """Drop the whole months of readings and assessments past their period (PostgreSQL).

    Record entries: only inside ``record_maintenance(reason)``, after the controller's decision
    and the export to the archive. Rows of a month that is only partly past the period stay until
    the whole month is. Returns the dropped partitions.
    """
    if maintenance_reason() is None:
        raise RecordImmutable(
            "dropping record partitions needs record_maintenance(reason): the controller's "
            "decision and an export to the archive come first"
        )
    now = now or datetime.now(UTC)
    dropped = []
    for category, droppable in PARTITIONED_CATEGORIES.items():
        days = getattr(policy, category)
        if days is None or not droppable:
            continue
        for name in _due_partitions(session, category, now - timedelta(days=days)):
            partitions.drop_partition(session.connection(), category, name)
            dropped.append(name)
    return dropped
