"""Treatment-record integrity: record entries are never updated or deleted through the ORM.

Assessments, pathway versions and their approvals, patient overrides, drift-report sign-offs, the worklist history,
the received resources and the audit log are insert-only. A correction is a new row pointing back
(`supersedes_id`). Two sanctioned exceptions: revoking an override (its `revoked` flag may go from
false to true, nothing else), and deletion by the retention job inside `record_maintenance()`.
Mapper events catch instance changes; a session event catches ORM bulk UPDATE/DELETE statements.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from service.db.tables import (
    Assessment,
    AuditEntry,
    CdsFeedback,
    DataRelease,
    DriftSignOff,
    ExportFile,
    IngestedResource,
    PathwayVersion,
    PathwayVersionDecision,
    Patient,
    PatientOverride,
    ResourceVersion,
    WorklistEvent,
)
from service.errors import Conflict

IMMUTABLE_RECORDS: tuple[type[Any], ...] = (
    Assessment,
    PathwayVersion,
    PathwayVersionDecision,
    PatientOverride,
    DriftSignOff,
    WorklistEvent,
    IngestedResource,
    ResourceVersion,
    CdsFeedback,
    AuditEntry,
    DataRelease,  # a release for secondary use, and the files it released
    ExportFile,
)
# Attribute -> the only value it may be changed to.
SANCTIONED_UPDATES: dict[type[Any], dict[str, Any]] = {PatientOverride: {"revoked": True}}

_maintenance: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "triage_record_maintenance", default=None
)


class RecordImmutable(Conflict):
    """An attempt to change or remove a record entry."""


@contextmanager
def record_maintenance(reason: str) -> Iterator[None]:
    """Permit deletion of record entries (the retention job only)."""
    token = _maintenance.set(reason)
    try:
        yield
    finally:
        _maintenance.reset(token)


def maintenance_reason() -> str | None:
    """Why record entries may be removed right now (None outside ``record_maintenance``)."""
    return _maintenance.get()


def _changed_attributes(target: Any) -> dict[str, Any]:
    state = inspect(target)
    changed = {}
    for attr in state.mapper.column_attrs:
        history = state.attrs[attr.key].history
        if history.has_changes():
            changed[attr.key] = history.added[0] if history.added else None
    return changed


def _before_update(_mapper: Any, _connection: Any, target: Any) -> None:
    changed = _changed_attributes(target)
    if not changed:
        return
    allowed = SANCTIONED_UPDATES.get(type(target), {})
    illegal = [k for k, v in changed.items() if k not in allowed or allowed[k] != v]
    if illegal:
        raise RecordImmutable(
            f"{type(target).__name__} is a record entry and cannot be changed "
            f"({', '.join(sorted(illegal))}); write a new entry that "
            f"supersedes it"
        )


def _before_delete(_mapper: Any, _connection: Any, target: Any) -> None:
    if _maintenance.get() is None:
        raise RecordImmutable(f"{type(target).__name__} is a record entry and cannot be deleted")


def _on_orm_execute(state: Any) -> None:
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    cls = mapper.class_ if mapper is not None else None
    if cls not in IMMUTABLE_RECORDS:
        return
    if state.is_delete and _maintenance.get() is not None:
        return
    raise RecordImmutable(
        f"bulk {'UPDATE' if state.is_update else 'DELETE'} of "
        f"{cls.__name__} record entries is not allowed"
    )


def _check_guardian_flag_on_insert(_mapper: Any, _connection: Any, target: Patient) -> None:
    from service.security.guardian import validate_guardian_flag

    validate_guardian_flag(target.birth_date, bool(target.confidential_to_guardians))


def _check_guardian_flag_on_update(_mapper: Any, _connection: Any, target: Patient) -> None:
    if inspect(target).attrs["confidential_to_guardians"].history.has_changes():
        _check_guardian_flag_on_insert(_mapper, _connection, target)


_installed = False


def install_record_guards() -> None:
    """Register the listeners once per process (idempotent)."""
    global _installed
    if _installed:
        return
    for cls in IMMUTABLE_RECORDS:
        event.listen(cls, "before_update", _before_update)
        event.listen(cls, "before_delete", _before_delete)
    event.listen(Session, "do_orm_execute", _on_orm_execute)
    event.listen(Patient, "before_insert", _check_guardian_flag_on_insert)
    event.listen(Patient, "before_update", _check_guardian_flag_on_update)
    _installed = True
