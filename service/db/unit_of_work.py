"""The one way to write: a transaction with per-patient locks in one fixed order, retried a
bounded number of times (with jitter) when the database gives up on it.

Several replicas share one PostgreSQL. Two writers that touch the same patients in different
orders (a Bundle for A and B on one replica, for B and A on another) deadlock, and PostgreSQL
kills one of them. Every writer therefore takes a transaction-scoped advisory lock per patient
(or per person, for an enrolment), all at once and sorted, before it reads what it will change:
the second writer waits for the first to commit and then sees its rows (READ COMMITTED), so an
idempotency key, an open worklist item or an item's state is never decided on a stale read.
What the locks cannot rule out (a lock order another code path breaks, a serialisation failure)
is retried here, in one place, not per route. SQLite has one writer at a time: BEGIN IMMEDIATE
takes its write lock at the start, so there the locks are not needed.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from service.db.engine import transaction
from service.errors import Busy

log = logging.getLogger("triage.db")

T = TypeVar("T")

# deadlock_detected, serialization_failure, lock_not_available (lock_timeout)
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "55P03"})
MAX_ATTEMPTS = 5
BACKOFF_BASE_S = 0.02
BACKOFF_CAP_S = 0.5

# Advisory-lock namespaces (the first of PostgreSQL's two int4 keys): one for patients, one for
# persons not yet enrolled, one for pathway documents. Jobs use the single-bigint key space,
# which never overlaps the two-int4 one.
PATIENT_LOCKS = 0x7061
PERSON_LOCKS = 0x7065
PATHWAY_LOCKS = 0x7077

# One statement for all keys: the subquery delivers them sorted, and the aggregate takes the
# locks row by row in that order, so every writer locks in the same order.
_LOCK_SORTED = text(
    "SELECT count(pg_advisory_xact_lock(:namespace, k)) "
    "FROM (SELECT DISTINCT unnest(CAST(:keys AS integer[])) AS k ORDER BY k) AS sorted_keys"
)


def lock_key(value: str) -> int:
    """A stable signed 32-bit key for a patient id, person number or pathway id."""
    return int.from_bytes(hashlib.sha256(value.encode()).digest()[:4], "big", signed=True)


def lock_all(session: Session, namespace: int, values: Iterable[str]) -> None:
    """Take one transaction-scoped lock per value, in one global order (PostgreSQL only)."""
    keys = sorted({lock_key(v) for v in values})
    if not keys or session.get_bind().dialect.name != "postgresql":
        return
    session.execute(_LOCK_SORTED, {"namespace": namespace, "keys": keys})


def lock_patients(session: Session, patient_ids: Iterable[str]) -> None:
    lock_all(session, PATIENT_LOCKS, patient_ids)


def is_retryable(exc: BaseException) -> bool:
    """A deadlock, serialisation failure or lock timeout (PostgreSQL), or a busy SQLite."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(orig)


class UnitOfWork:
    """Runs ``work(session)`` in one transaction; retries it whole on a transient failure."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sessions = sessions
        self.attempts = attempts
        self._sleep = sleep
        bind = sessions.kw.get("bind")
        self.sqlite = bind is not None and bind.dialect.name == "sqlite"
        # SQLite writers queued on its file lock poll with back-off sleeps; a lock in the
        # process (one per engine) hands the write lock on at once (PostgreSQL needs none).
        self._local_writer = _sqlite_writer_lock(bind) if bind is not None and self.sqlite else None

    def run(self, work: Callable[[Session], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return self._once(work)
            except DBAPIError as exc:
                if not is_retryable(exc):
                    raise
                if attempt == self.attempts:
                    log.warning("write gave up after %d attempts: %s", attempt, type(exc.orig))
                    raise Busy(
                        "the database is busy with concurrent writes; retry the request"
                    ) from exc
                # Full jitter: replicas that collided do not collide again in step.
                delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))  # noqa: S311
                log.info("transient write conflict (attempt %d), retrying", attempt)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, work: Callable[[Session], T]) -> T:
        if self._local_writer is None:
            with transaction(self.sessions) as session:
                return work(session)
        with self._local_writer, transaction(self.sessions) as session:
            # A batch's savepoints would otherwise begin as readers, and a reader that finds
            # another connection committed since cannot become a writer: SQLite answers
            # "database is locked" at once.
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            return work(session)


_SQLITE_WRITERS: WeakKeyDictionary[Engine, threading.Lock] = WeakKeyDictionary()
_SQLITE_WRITERS_GUARD = threading.Lock()


def _sqlite_writer_lock(engine: Engine) -> threading.Lock:
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(engine, threading.Lock())


def write(sessions: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    """One write with the default retry policy (for callers without a long-lived UnitOfWork)."""
    return UnitOfWork(sessions).run(work)
