"""Outbox queries: claim the next entry of each patient, record the outcome, count by state.

Claiming is a lease: the claimer moves `next_attempt_at` past the HTTP timeout and bumps
`attempts`, in one short transaction, then sends without holding a lock. Another replica skips
rows a claimer has locked (FOR UPDATE SKIP LOCKED on PostgreSQL), skips leased rows (their
`next_attempt_at` is in the future), and never takes a patient's later entry while an earlier one
is still pending, so per-patient order holds across replicas. A replica that dies mid-send leaves
a lease that expires, and the entry is sent again: the receiver's conditional updates make that
harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from service.db.engine import transaction
from service.db.tables import OutboxEntry
from service.outbox.writer import DEAD_LETTER, DELIVERED, PENDING, STATES

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Claim:
    id: int
    patient_id: str
    attempts: int  # after this claim; the outcome is recorded only if it still matches
    payload: dict[str, Any]


def claim_due(
    sessions: sessionmaker[Session], limit: int, lease_s: float, now: datetime | None = None
) -> list[Claim]:
    """Lease up to `limit` due entries, at most one per patient: the patient's earliest."""
    now = now or datetime.now(UTC)
    earlier = aliased(OutboxEntry)
    blocked = exists().where(
        earlier.patient_id == OutboxEntry.patient_id,
        earlier.state == PENDING,
        earlier.id < OutboxEntry.id,
    )
    with transaction(sessions) as session:
        rows = session.execute(
            select(
                OutboxEntry.id, OutboxEntry.patient_id, OutboxEntry.attempts, OutboxEntry.payload
            )
            .where(OutboxEntry.state == PENDING, OutboxEntry.next_attempt_at <= now, ~blocked)
            .order_by(OutboxEntry.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=OutboxEntry)
        ).all()
        claims = []
        lease_until = now + timedelta(seconds=lease_s)
        for row in rows:
            # Conditional on what we read, so two claimers can never both win (SQLite has no
            # row locks; there the losing writer sees rowcount 0).
            result = session.execute(
                update(OutboxEntry)
                .where(
                    OutboxEntry.id == row.id,
                    OutboxEntry.state == PENDING,
                    OutboxEntry.attempts == row.attempts,
                )
                .values(attempts=row.attempts + 1, next_attempt_at=lease_until)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claims.append(Claim(row.id, row.patient_id, row.attempts + 1, row.payload))
    return claims


def record_delivered(session: Session, claim: Claim, now: datetime) -> None:
    session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.id == claim.id, OutboxEntry.attempts == claim.attempts)
        .values(state=DELIVERED, delivered_at=now, last_error=None)
    )


def record_failed(session: Session, claim: Claim, error: str, retry_at: datetime) -> None:
    session.execute(
        update(OutboxEntry)
        .where(
            OutboxEntry.id == claim.id,
            OutboxEntry.attempts == claim.attempts,
            OutboxEntry.state == PENDING,
        )
        .values(next_attempt_at=retry_at, last_error=error[:MAX_ERROR_CHARS])
    )


def record_dead_letter(session: Session, claim: Claim, error: str) -> bool:
    """DIPS refused the entry (4xx): set it aside; the patient's later entries go on."""
    result = session.execute(
        update(OutboxEntry)
        .where(
            OutboxEntry.id == claim.id,
            OutboxEntry.attempts == claim.attempts,
            OutboxEntry.state == PENDING,
        )
        .values(state=DEAD_LETTER, last_error=error[:MAX_ERROR_CHARS])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def resend(session: Session, entry_id: int, now: datetime | None = None) -> bool:
    """Put a dead letter back in the queue, due now with a fresh backoff; False if it is not one."""
    result = session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.id == entry_id, OutboxEntry.state == DEAD_LETTER)
        .values(state=PENDING, attempts=0, next_attempt_at=now or datetime.now(UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def counts_by_state(session: Session) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for state, n in session.execute(
        select(OutboxEntry.state, func.count()).group_by(OutboxEntry.state)
    ).all():
        counts[state] = int(n)
    return counts
