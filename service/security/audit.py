"""The audit log (Normen; pasientjournalloven § 22 on access control and logging, § 18 on the
patient's right to see who accessed the record).

Every request to a protected route becomes one row per patient whose data it touched (or one row
without a patient): who, role, organisation, patient, what (method and route template), purpose,
time and outcome status. Refusals (401/403) are rows too.

The log is append-only and tamper-evident: row n stores the hash of row n-1 and its own hash over
its fields, its sequence number and that previous hash, so editing or deleting any row breaks the
chain at a row `verify_chain` names. Writers are serialised (PostgreSQL: a transaction-scoped
advisory lock; SQLite: BEGIN IMMEDIATE), so replicas never fork the chain.

Writing happens off the request path: the middleware hands events to an in-process queue that a
background thread drains in batched inserts and flushes on shutdown (bench/bench_audit.py measures
what this costs the scoring path). The window at risk on a hard crash is one batch interval.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, event, insert, select, text
from sqlalchemy.orm import Session

from models.identifiers import contains_person_number
from service.db.tables import AuditEntry, Patient
from service.security.principal import Principal, Role

log = logging.getLogger("triage.audit")

GENESIS_HASH = "0" * 64
# Any constant shared by every replica; namespaced so it cannot collide with other advisory locks.
_PG_LOCK_KEY = 0x7472_6961_6765_0001  # "triage" + 1
# Why the data was accessed (Normen: "formål"), by role; a route may set
# request.state.audit_purpose.
PURPOSE_BY_ROLE = {
    Role.CLINICIAN: "treatment",  # helsehjelp
    Role.INTEGRATION: "treatment-integration",  # VKP, Helsenorge, DIPS acting for care
    Role.COMPLIANCE: "audit-control",  # etterfølgende kontroll
    Role.ML_ENGINEER: "quality-assurance",  # kvalitetssikring av beslutningsstøtten
    Role.ADMIN: "administration",
}
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,35}$")


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    actor: str
    role: str
    organisation: str | None
    patient_id: str | None
    action: str  # read | write | refuse
    resource: str
    purpose: str
    outcome: int


def _iso(at: datetime) -> str:
    aware = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(seq: int, prev_hash: str, e: AuditEvent | Any) -> str:
    """SHA-256 over the row's sequence number, the previous row's hash and every field."""
    canonical = json.dumps(
        [
            seq,
            prev_hash,
            _iso(e.at),
            e.actor,
            e.role,
            e.organisation,
            e.patient_id,
            e.action,
            e.resource,
            e.purpose,
            int(e.outcome),
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# ---- writing -------------------------------------------------------------------------------


def append_events(engine: Engine, events: list[AuditEvent]) -> int:
    """Append events to the chain in one transaction, serialised across writers and replicas."""
    if not events:
        return 0
    table: Table = AuditEntry.__table__  # type: ignore[assignment]
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # Take the write lock before reading the head, so two writers cannot chain onto it.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        head = conn.execute(
            select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1)
        ).first()
        seq, prev = (head[0], head[1]) if head else (0, GENESIS_HASH)
        rows = []
        for e in events:
            seq += 1
            digest = entry_hash(seq, prev, e)
            rows.append(
                {
                    "seq": seq,
                    "at": e.at,
                    "actor": e.actor[:64],
                    "role": e.role[:32],
                    "organisation": e.organisation,
                    "patient_id": e.patient_id,
                    "action": e.action,
                    "resource": e.resource[:200],
                    "purpose": e.purpose[:64],
                    "outcome": e.outcome,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        conn.execute(insert(table), rows)
        conn.commit()
    return len(events)


class AuditWriter:
    """An in-process queue drained by one background thread in batched, chained inserts.

    ``synchronous=True`` writes in the caller's thread instead (for tests and the benchmark's
    comparison); ``flush()`` waits until everything submitted so far is stored.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int = 500,
        interval_s: float = 0.05,
        synchronous: bool = False,
    ) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.synchronous = synchronous
        self._queue: queue.SimpleQueue[AuditEvent | None] = queue.SimpleQueue()
        self._submitted = 0
        self._written = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.failures = 0

    @property
    def backlog(self) -> int:
        return self._submitted - self._written

    def start(self) -> None:
        if self.synchronous or self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def submit(self, events: Iterable[AuditEvent]) -> None:
        batch = list(events)
        if not batch:
            return
        if self.synchronous or self._thread is None:
            append_events(self.engine, batch)
            with self._cond:
                self._submitted += len(batch)
                self._written += len(batch)
            return
        with self._cond:
            self._submitted += len(batch)
        for e in batch:
            self._queue.put(e)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until every event submitted before the call is stored; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            target = self._submitted
            while self._written < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None:
                    return self._written >= target
                self._cond.wait(remaining)
        return True

    def stop(self, timeout_s: float = 30.0) -> None:
        """Drain the queue and stop the thread (called on shutdown)."""
        if self._thread is None:
            return
        self.flush(timeout_s)
        self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._thread = None

    def _take_batch(self) -> list[AuditEvent]:
        batch: list[AuditEvent] = []
        try:
            first = self._queue.get(timeout=self.interval_s)
        except queue.Empty:
            return batch
        if first is not None:
            batch.append(first)
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                batch.append(item)
        return batch

    def _run(self) -> None:
        pending: list[AuditEvent] = []
        while True:
            if not pending:
                pending = self._take_batch()
            if not pending:
                if self._stopping:
                    return
                continue
            try:
                append_events(self.engine, pending)
            except Exception:  # the database is down or locked: keep the rows and retry
                self.failures += 1
                log.exception("audit batch could not be written; retrying")
                time.sleep(min(5.0, 0.1 * self.failures))
                continue
            with self._cond:
                self._written += len(pending)
                self._cond.notify_all()
            pending = []


# ---- what a request touched ----------------------------------------------------------------


@dataclass
class AuditContext:
    """Per-request scratchpad shared (by reference) with the threads that serve the request."""

    principal: Principal | None = None
    patient_ids: set[str] = field(default_factory=set)
    purpose: str | None = None


_current: contextvars.ContextVar[AuditContext | None] = contextvars.ContextVar(
    "triage_audit_context", default=None
)


def current_context() -> AuditContext | None:
    return _current.get()


def note_patients(ids: Iterable[str]) -> None:
    """Record that the current request touched these patients (domain code may call this)."""
    ctx = _current.get()
    if ctx is not None:
        ctx.patient_ids.update(i for i in ids if i)


def _on_patient_loaded(target: Patient, *_context: Any) -> None:
    # "load" passes (target, context); "refresh" passes (target, context, attribute names).
    ctx = _current.get()
    if ctx is None:
        return
    ctx.patient_ids.add(target.id)
    if ctx.principal is not None and ctx.principal.guardian_proxy:
        from service.security.guardian import refuse_if_withheld

        refuse_if_withheld(target)


def _on_patient_inserted(_mapper: Any, _connection: Any, target: Patient) -> None:
    ctx = _current.get()
    if ctx is not None:
        ctx.patient_ids.add(target.id)


_hooks_installed = False


def install_audit_hooks() -> None:
    """Any Patient row loaded or inserted while serving a request is noted for its audit rows."""
    global _hooks_installed
    if _hooks_installed:
        return
    event.listen(Patient, "load", _on_patient_loaded)
    event.listen(Patient, "refresh", _on_patient_loaded)
    event.listen(Patient, "after_insert", _on_patient_inserted)
    _hooks_installed = True


def safe_patient_id(value: Any) -> str | None:
    """A patient id from the URL, or None when it is not one (never store what could be a fnr)."""
    if not isinstance(value, str):
        return None
    value = value.removeprefix("Patient/")
    if not _SAFE_ID.match(value) or contains_person_number(value):
        return None
    return value


def request_patient_ids(
    path_params: dict[str, Any], query: dict[str, list[str]], state: dict[str, Any]
) -> set[str]:
    ids: set[str] = set()
    for value in [
        path_params.get("patient_id"),
        *query.get("subject", []),
        *query.get("patient", []),
    ]:
        pid = safe_patient_id(value)
        if pid:
            ids.add(pid)
    for value in state.get("audit_patient_ids", ()) or ():
        pid = safe_patient_id(value)
        if pid:
            ids.add(pid)
    return ids


def build_events(
    *,
    method: str,
    route_path: str,
    status: int,
    principal: Principal | None,
    patient_ids: set[str],
    purpose: str | None,
    at: datetime | None = None,
) -> list[AuditEvent]:
    at = at or datetime.now(UTC)
    if status in (401, 403):
        action = "refuse"
    else:
        action = "read" if method in ("GET", "HEAD", "OPTIONS") else "write"
    if principal is None:
        actor, role, organisation = "anonymous", "none", None
        purpose = purpose or "unknown"
    else:
        actor, role, organisation = principal.subject, principal.role.value, principal.organisation
        purpose = purpose or PURPOSE_BY_ROLE.get(principal.role, "unknown")
        if principal.guardian_proxy:
            purpose = f"{purpose}:guardian-proxy"
    resource = f"{method} {route_path}"
    targets: list[str | None] = [*sorted(patient_ids)] or [None]
    return [
        AuditEvent(at, actor, role, organisation, pid, action, resource, purpose, status)
        for pid in targets
    ]


# ---- verification --------------------------------------------------------------------------


@dataclass
class VerifyResult:
    ok: bool
    rows_checked: int
    head_seq: int | None
    head_hash: str
    bad_seq: int | None = None
    problem: str | None = None
    checkpoint_seq: int | None = None  # the newest signed checkpoint the chain was held to
    checkpoint_at: str | None = None

    def describe(self) -> str:
        if self.ok:
            anchored = (
                f"; matches the signed checkpoint of {self.checkpoint_at} (seq "
                f"{self.checkpoint_seq})"
                if self.checkpoint_at
                else "; no signed checkpoint yet (run `triage audit checkpoint`)"
            )
            return (
                f"audit chain intact: {self.rows_checked} rows, head seq {self.head_seq}, "
                f"head hash {self.head_hash}{anchored}"
            )
        where = f" at row seq {self.bad_seq}" if self.bad_seq is not None else ""
        return f"audit chain BROKEN{where}: {self.problem}"


def _rows(session: Session, batch: int = 2000) -> Iterator[Any]:
    table = AuditEntry.__table__
    last = 0
    while True:
        chunk = session.execute(
            select(table).where(table.c.seq > last).order_by(table.c.seq).limit(batch)
        ).all()
        if not chunk:
            return
        yield from chunk
        last = chunk[-1].seq


def verify_chain(
    session: Session,
    expected_head: str | None = None,
    checkpoints: Mapping[int, str] | None = None,
) -> VerifyResult:
    """Walk the log in order; name the first row that was edited, or follows deleted rows.

    Deleting the newest rows leaves a shorter valid chain, and rewriting a row and recomputing
    every later hash leaves a consistent one. ``checkpoints`` ({seq: hash} signed earlier and
    kept outside the database, service/security/checkpoints.py) catch both; so does a head hash
    recorded earlier (``expected_head``).
    """
    checkpoints = checkpoints or {}
    last_checkpoint = 0
    prev_seq, prev_hash, n = 0, GENESIS_HASH, 0
    seen_expected = expected_head is None
    for row in _rows(session):
        n += 1
        if row.prev_hash != prev_hash:
            gap = (
                f"; rows {prev_seq + 1}..{row.seq - 1} are missing"
                if row.seq != prev_seq + 1
                else ""
            )
            return VerifyResult(
                False,
                n,
                prev_seq or None,
                prev_hash,
                row.seq,
                f"prev_hash does not match row {prev_seq} (that row was altered "
                f"or rows before this one were deleted){gap}",
            )
        if row.seq != prev_seq + 1:
            return VerifyResult(
                False,
                n,
                prev_seq or None,
                prev_hash,
                row.seq,
                f"rows {prev_seq + 1}..{row.seq - 1} are missing",
            )
        if entry_hash(row.seq, row.prev_hash, row) != row.hash:
            return VerifyResult(
                False,
                n,
                prev_seq or None,
                prev_hash,
                row.seq,
                "row content does not match its hash (the row was edited)",
            )
        signed = checkpoints.get(row.seq)
        if signed is not None:
            if signed != row.hash:
                return VerifyResult(
                    False,
                    n,
                    prev_seq or None,
                    prev_hash,
                    row.seq,
                    f"row {row.seq} differs from its signed checkpoint: rows "
                    f"{last_checkpoint + 1}..{row.seq} were rewritten and their hashes "
                    "recomputed",
                )
            last_checkpoint = row.seq
        prev_seq, prev_hash = row.seq, row.hash
        if row.hash == expected_head:
            seen_expected = True
    if not seen_expected:
        return VerifyResult(
            False,
            n,
            prev_seq or None,
            prev_hash,
            prev_seq + 1,
            "the recorded head hash is not in the chain (newest rows deleted or the log replaced)",
        )
    return VerifyResult(True, n, prev_seq or None, prev_hash)
