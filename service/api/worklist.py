"""The prioritised worklist and its transitions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from service.api.deps import ERRORS, NOT_FOUND, ReadSession, ServicesDep, parse_if_match
from service.db.tables import Assessment, Patient
from service.db.unit_of_work import write
from service.domain.worklist import ACTIVE_STATES, item_summary
from service.security.deps import CurrentPrincipal

router = APIRouter(prefix="/api/v1/worklist", tags=["worklist"], responses=ERRORS)


class WorklistPatient(BaseModel):
    id: str
    display_identifier: str
    sex: str
    birth_date: str
    pathway: str
    unit: str
    confidential_to_guardians: bool
    target_saturation: str | None = Field(
        description='Prescribed SpO2 target ("88-92": NEWS2 scale 2); null: not set'
    )


class WorklistItemPublic(BaseModel):
    id: str
    patient: WorklistPatient
    state: str
    level: str
    probability: float | None
    top_factors: list[dict[str, Any]]
    rules_fired: list[dict[str, Any]]
    last_data_at: datetime = Field(description="Time of the newest reading (not of the scoring)")
    current_level: str = Field(description="The newest assessment's level")
    held: bool = Field(
        description="The item holds a more urgent level than the newest assessment's, "
        "until a clinician acknowledges it"
    )
    peak_at: datetime | None = Field(description="When the held level was reached")
    peak_reasons: list[dict[str, Any]] = Field(description="Why the held level was reached")
    opened_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    escalated_by: str | None
    escalated_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    assessment_id: str
    model_version: str | None
    version: int = Field(description="Changes with every change; send it as If-Match")


class TransitionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


@router.get("", name="get_worklist", response_model=list[WorklistItemPublic])
def get_worklist(
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
    unit: str | None = Query(None, max_length=64),
    level: Literal["red", "yellow", "green"] | None = None,
    state: list[Literal["open", "acknowledged", "escalated", "resolved"]] | None = Query(None),
    limit: int = Query(500, ge=1, le=5000),
) -> list[dict[str, Any]]:
    """Items ordered by triage level, then risk, then waiting time."""
    states = tuple(state) if state else ACTIVE_STATES
    rows = services.worklist.list_items(session, principal, unit, states, level, limit)
    return [item_summary(*row) for row in rows]


@router.post(
    "/{item_id}/{action}",
    name="worklist_transition",
    response_model=WorklistItemPublic,
    responses={
        **NOT_FOUND,
        409: {
            "description": "Illegal transition, or someone else changed the item first: the body "
            "holds its current state and who changed it"
        },
        422: {"description": "Unknown action, or an If-Match that is not an item ETag"},
    },
)
def worklist_transition(
    item_id: str,
    action: Literal["acknowledge", "escalate", "resolve"],
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    services: ServicesDep,
    body: TransitionBody | None = None,
    if_match: str | None = Header(None, max_length=100),
) -> dict[str, Any]:
    """Acknowledge, escalate or resolve an item (with an optional note).

    Send the item's version as If-Match to act only on what you saw; the answer's ETag is the
    new version.
    """
    expected = parse_if_match(if_match)

    def work(session: Session) -> dict[str, Any]:
        item = services.worklist.transition(
            session, principal, item_id, action, body.note if body else None, expected
        )
        patient = session.get(Patient, item.patient_id)
        assessment = session.get(Assessment, item.assessment_id)
        assert patient is not None and assessment is not None
        return item_summary(item, patient, assessment)

    summary = write(request.app.state.sessions, work)
    response.headers["ETag"] = f'"{summary["version"]}"'
    return summary
