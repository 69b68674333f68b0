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
    display_name: str | None
    display_identifier: str
    sex: str
    birth_date: str
    pathway: str
    unit: str
    confidential_to_guardians: bool
    target_saturation: str | None = Field(
        description='Prescribed SpO2 target ("88-92": NEWS2 scale 2); null: not set'
    )


class HistoryEvent(BaseModel):
    action: str
    actor: str
    at: datetime
    note: str | None
    recipient: str | None


class WorklistItemPublic(BaseModel):
    id: str
    patient: WorklistPatient
    state: str
    level: str
    level_source: str = Field(
        description="Where the level shown (``level``, the held one while ``held``) came from: "
        "rule | model | rule+model | none"
    )
    current_level_source: str = Field(description="Where the newest assessment's level came from")
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
    escalated_to: str | None = Field(
        description="Whom the escalation is for: role:<role>, unit:<unit> or hpr:<HPR number>"
    )
    history: list[HistoryEvent] = Field(
        description="What people did with the item, oldest first (who, when, note, recipient)"
    )
    assessment_id: str
    model_version: str | None
    version: int = Field(description="Changes with every change; send it as If-Match")


class TransitionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(
        default=None, max_length=2000, description="Required to resolve a red item"
    )
    recipient: str | None = Field(
        default=None,
        max_length=120,
        description="Required to escalate: role:<clinician|admin>, unit:<unit> or "
        "hpr:<HPR number>; the recipient sees the item in their list (for_me=true)",
    )


_TRANSITION = "worklist_transition_api_v1_worklist__item_id___action__post"


@router.get(
    "",
    name="get_worklist",
    response_model=list[WorklistItemPublic],
    responses={
        200: {
            "description": "The items",
            "links": {
                "ActOnFirstItem": {
                    "operationId": _TRANSITION,
                    "parameters": {"item_id": "$response.body#/0/id"},
                }
            },
        }
    },
)
def get_worklist(
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
    unit: str | None = Query(None, max_length=64),
    level: Literal["red", "yellow", "green"] | None = None,
    state: list[Literal["open", "acknowledged", "escalated", "resolved"]] | None = Query(None),
    limit: int = Query(500, ge=1, le=5000),
    for_me: bool = Query(False, description="Only items escalated to the caller"),
) -> list[dict[str, Any]]:
    """Items ordered by triage level, unacknowledged before acknowledged, then risk, then
    waiting time; each with its history."""
    states = tuple(state) if state else ACTIVE_STATES
    rows = services.worklist.list_items(
        session, principal, unit, states, level, limit, for_me=for_me
    )
    history = services.worklist.history(session, [row[0].id for row in rows])
    return [item_summary(i, p, a, history[i.id]) for i, p, a in rows]


@router.post(
    "/{item_id}/{action}",
    name="worklist_transition",
    response_model=WorklistItemPublic,
    responses={
        **NOT_FOUND,
        200: {
            "description": "The item as it is now; its ETag is the new version",
            "links": {
                "ActAgain": {
                    "operationId": _TRANSITION,
                    "parameters": {
                        "item_id": "$response.body#/id",
                        "header.If-Match": "$response.header.ETag",
                    },
                }
            },
        },
        409: {
            "description": "Illegal transition, or someone else changed the item first: the body "
            "holds its current state and who changed it"
        },
        422: {
            "description": "Unknown action; an If-Match that is not an item ETag; a red "
            "resolved without a note; an escalation without a valid recipient"
        },
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
            session,
            principal,
            item_id,
            action,
            body.note if body else None,
            expected,
            recipient=body.recipient if body else None,
        )
        patient = session.get(Patient, item.patient_id)
        assessment = session.get(Assessment, item.assessment_id)
        assert patient is not None and assessment is not None
        history = services.worklist.history(session, [item.id])[item.id]
        return item_summary(item, patient, assessment, history)

    summary = write(request.app.state.sessions, work)
    response.headers["ETag"] = f'"{summary["version"]}"'
    return summary
