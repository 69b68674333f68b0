"""Delivery state of the DIPS outbox (metadata only: payloads name the patient and stay inside)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel
from sqlalchemy import select

from service.api.deps import ERRORS, NOT_FOUND, ReadSession
from service.db.engine import transaction
from service.db.tables import OutboxEntry, Patient
from service.errors import Conflict, NotFound
from service.outbox import store
from service.outbox.store import counts_by_state
from service.security import visibility
from service.security.deps import CurrentPrincipal

router = APIRouter(prefix="/api/v1/outbox", tags=["outbox"], responses=ERRORS)


class OutboxEntryPublic(BaseModel):
    id: int
    created_at: datetime
    patient_id: str
    item_id: str
    event: str
    state: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None


class OutboxPublic(BaseModel):
    endpoint_configured: bool
    counts: dict[str, int]
    oldest_pending_at: datetime | None
    entries: list[OutboxEntryPublic]


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@router.get("", name="list_outbox", response_model=OutboxPublic)
def list_outbox(
    request: Request,
    principal: CurrentPrincipal,
    session: ReadSession,
    state: Literal["pending", "delivered", "recorded", "dead-letter"] | None = None,
    patient: str | None = Query(None, max_length=36, description="Patient id"),
    limit: int = Query(100, ge=1, le=1000),
) -> OutboxPublic:
    """Counts by state (all organisations), the oldest undelivered entry, and the newest entries
    of the caller's organisation (no payloads)."""
    query = select(OutboxEntry).order_by(OutboxEntry.id.desc()).limit(limit)
    if not visibility.sees_everything(principal):
        query = query.join(Patient, Patient.id == OutboxEntry.patient_id).where(
            visibility.patient_filter(principal, shared=False)
        )
    if state:
        query = query.where(OutboxEntry.state == state)
    if patient:
        query = query.where(OutboxEntry.patient_id == patient)
    entries = [
        OutboxEntryPublic(
            id=e.id,
            created_at=_utc(e.created_at),
            patient_id=e.patient_id,
            item_id=e.item_id,
            event=e.event,
            state=e.state,
            attempts=e.attempts,
            next_attempt_at=_utc(e.next_attempt_at),
            delivered_at=_utc(e.delivered_at) if e.delivered_at else None,
            last_error=e.last_error,
        )
        for e in session.scalars(query)
    ]
    oldest = session.scalar(
        select(OutboxEntry.created_at)
        .where(OutboxEntry.state == "pending")
        .order_by(OutboxEntry.id)
        .limit(1)
    )
    return OutboxPublic(
        endpoint_configured=request.app.state.settings.outbox_endpoint is not None,
        counts=counts_by_state(session),
        oldest_pending_at=_utc(oldest) if oldest else None,
        entries=entries,
    )


@router.post(
    "/{entry_id}/resend",
    name="resend_outbox_entry",
    response_model=OutboxEntryPublic,
    responses={**NOT_FOUND, 409: {"description": "The entry is not a dead letter"}},
)
def resend_outbox_entry(
    request: Request,
    principal: CurrentPrincipal,
    # Bounded to BIGINT: a larger id is a 422 naming it, not an overflow in the driver.
    entry_id: int = Path(ge=1, le=2**63 - 1),
) -> OutboxEntryPublic:
    """Put a dead letter (an entry DIPS refused with a 4xx) back in the queue, due now."""
    with transaction(request.app.state.sessions) as session:
        query = select(OutboxEntry).where(OutboxEntry.id == entry_id)
        if not visibility.sees_everything(principal):
            query = query.join(Patient, Patient.id == OutboxEntry.patient_id).where(
                visibility.patient_filter(principal, write=True)
            )
        entry = session.scalar(query)
        if entry is None:
            raise NotFound(f"outbox entry {entry_id} is not known")
        request.state.audit_patient_ids = [entry.patient_id]
        if not store.resend(session, entry_id):
            raise Conflict(f"outbox entry {entry_id} is {entry.state}, not a dead letter")
        session.refresh(entry)
        return OutboxEntryPublic(
            id=entry.id,
            created_at=_utc(entry.created_at),
            patient_id=entry.patient_id,
            item_id=entry.item_id,
            event=entry.event,
            state=entry.state,
            attempts=entry.attempts,
            next_attempt_at=_utc(entry.next_attempt_at),
            delivered_at=_utc(entry.delivered_at) if entry.delivered_at else None,
            last_error=entry.last_error,
        )
