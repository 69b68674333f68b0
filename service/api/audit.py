"""The audit log for compliance officers: search, the patient's access report, chain check."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from service.api.deps import ERRORS, INVALID, NOT_FOUND, ReadSession
from service.db.tables import AuditEntry
from service.domain.sharing import (
    GrantPublic,
    SharingService,
    TransferPublic,
    grant_public,
    transfer_public,
)
from service.errors import InvalidInput, NotFound
from service.security import visibility
from service.security.audit import safe_patient_id
from service.security.checkpoints import verify_with_checkpoints
from service.security.deps import CurrentPrincipal

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=ERRORS)


class AuditEntryPublic(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    organisation: str | None
    patient_id: str | None
    action: str
    resource: str
    purpose: str
    outcome: int
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    total: int
    entries: list[AuditEntryPublic]


class AccessReportLine(BaseModel):
    at: datetime
    who: str = Field(description="HPR number of the person, or the system's client id")
    role: str
    organisation: str | None
    what: str
    purpose: str
    outcome: int


class AccessReport(BaseModel):
    """The extract a patient may ask for (pasientjournalloven § 18): who accessed the record."""

    patient_id: str
    generated_at: datetime
    period_from: datetime | None
    period_to: datetime | None
    accesses: list[AccessReportLine]
    refused_attempts: int
    shared_with: list[GrantPublic] = Field(
        default_factory=list,
        description="Organisations given read access (grants, active or not), newest first",
    )
    transfers: list[TransferPublic] = Field(
        default_factory=list, description="Moves of the follow-up between units or organisations"
    )


class VerifyPublic(BaseModel):
    ok: bool
    rows_checked: int
    head_seq: int | None
    head_hash: str
    bad_seq: int | None
    problem: str | None
    checkpoint_seq: int | None = None
    checkpoint_at: str | None = None


def _flush(request: Request) -> None:
    writer = getattr(request.app.state, "audit", None)
    if writer is not None:
        writer.flush()


def _patient(value: str | None) -> str | None:
    if value is None:
        return None
    pid = safe_patient_id(value)
    if pid is None:
        raise InvalidInput("patient must be a patient id (Patient/<id>)", location="patient")
    return pid


@router.get("", name="search_audit_log", response_model=AuditPage, responses=INVALID)
def search_audit_log(
    request: Request,
    principal: CurrentPrincipal,
    session: ReadSession,
    patient: str | None = Query(None, max_length=44, description="Patient id"),
    user: str | None = Query(None, max_length=64, description="Actor: HPR number or client id"),
    since: datetime | None = Query(None, alias="from", description="From (inclusive), ISO 8601"),
    until: datetime | None = Query(None, alias="to", description="To (exclusive), ISO 8601"),
    action: Literal["read", "write", "refuse", "release"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10_000_000),
    resource: str | None = Query(
        None, max_length=100, description="Part of the resource (method and route)"
    ),
    newest_first: bool = Query(False, description="Newest first (default: oldest first)"),
) -> AuditPage:
    """Audit rows filtered by patient, user, time, action and resource, oldest first."""
    _flush(request)
    query = select(AuditEntry).where(visibility.audit_filter(principal))
    pid = _patient(patient)
    if pid:
        query = query.where(AuditEntry.patient_id == pid)
    if user:
        query = query.where(AuditEntry.actor == user)
    if since:
        query = query.where(AuditEntry.at >= since)
    if until:
        query = query.where(AuditEntry.at < until)
    if action:
        query = query.where(AuditEntry.action == action)
    if resource:
        query = query.where(AuditEntry.resource.contains(resource, autoescape=True))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    order = AuditEntry.seq.desc() if newest_first else AuditEntry.seq
    rows = session.scalars(query.order_by(order).limit(limit).offset(offset)).all()
    return AuditPage(
        total=total,
        entries=[AuditEntryPublic.model_validate(r, from_attributes=True) for r in rows],
    )


@router.get(
    "/access-report",
    name="audit_access_report",
    response_model=AccessReport,
    responses={**INVALID, **NOT_FOUND},
)
def audit_access_report(
    request: Request,
    principal: CurrentPrincipal,
    session: ReadSession,
    patient: str = Query(..., max_length=44, description="Patient id"),
    since: datetime | None = Query(None, alias="from"),
    until: datetime | None = Query(None, alias="to"),
) -> AccessReport:
    """ "Who has looked at my record": every access to one patient's data, for the patient."""
    from datetime import UTC

    _flush(request)
    pid = _patient(patient) or ""
    if not visibility.may_read_audit_of(session, principal, pid):
        raise NotFound(f"Patient/{pid} not found")
    query = select(AuditEntry).where(AuditEntry.patient_id == pid)
    if since:
        query = query.where(AuditEntry.at >= since)
    if until:
        query = query.where(AuditEntry.at < until)
    rows = session.scalars(query.order_by(AuditEntry.seq)).all()
    accesses = [
        AccessReportLine(
            at=r.at,
            who=r.actor,
            role=r.role,
            organisation=r.organisation,
            what=r.resource,
            purpose=r.purpose,
            outcome=r.outcome,
        )
        for r in rows
        if r.action != "refuse"
    ]
    return AccessReport(
        patient_id=pid or "",
        generated_at=datetime.now(UTC),
        period_from=since,
        period_to=until,
        accesses=accesses,
        refused_attempts=sum(1 for r in rows if r.action == "refuse"),
        shared_with=[grant_public(g) for g in SharingService.grants(session, pid)],
        transfers=[transfer_public(t) for t in SharingService.transfer_history(session, pid)],
    )


@router.get("/verify", name="verify_audit_log", response_model=VerifyPublic)
def verify_audit_log(request: Request, session: ReadSession) -> VerifyPublic:
    """Walk the hash chain; names the first edited row or the row after deleted ones."""
    _flush(request)
    result = verify_with_checkpoints(session, request.app.state.settings)
    return VerifyPublic(
        ok=result.ok,
        rows_checked=result.rows_checked,
        head_seq=result.head_seq,
        head_hash=result.head_hash,
        bad_seq=result.bad_seq,
        problem=result.problem,
        checkpoint_seq=result.checkpoint_seq,
        checkpoint_at=result.checkpoint_at,
    )
