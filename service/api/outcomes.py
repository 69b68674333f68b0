"""Outcomes a site records for its patients (POST /api/v1/outcomes).

Thin route: the body is checked here, the patient's visibility and the record are the domain's.
Every call is audited by the audit middleware with the patient it touched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from service.api.deps import ERRORS, INVALID, NOT_FOUND, ServicesDep
from service.db.engine import transaction
from service.domain.outcomes import NO_EVENT, EventType, OutcomeService
from service.security.deps import CurrentPrincipal

router = APIRouter(prefix="/api/v1/outcomes", tags=["outcomes"], responses=ERRORS)

# Bounds that keep a datetime well inside what every store and epoch conversion handles.
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class OutcomeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    patient_id: str = Field(min_length=1, max_length=36)
    event_type: EventType | None = Field(
        default=None,
        description='What happened; "none" is a follow-up that found no deterioration. '
        "May be left out when `deteriorated` is given (then: deterioration or none).",
    )
    onset_at: AwareDatetime = Field(
        validation_alias=AliasChoices("onset_at", "occurred_at"),
        description="When the event began (its onset), or when the follow-up that found none "
        "took place; with a time zone. `occurred_at` is accepted as the older name.",
    )
    source: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:/-]*$",
        description="How it is known, e.g. dips-admission, follow-up-call, death-register.",
    )
    deteriorated: bool | None = Field(
        default=None, description="Older form: true = deterioration, false = none."
    )

    @field_validator("onset_at")
    @classmethod
    def _bounded(cls, value: datetime) -> datetime:
        if not _EARLIEST <= value <= _LATEST:
            raise ValueError("must lie between 2000-01-01 and 2100-01-01")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> OutcomeCreate:
        if self.event_type is None:
            if self.deteriorated is None:
                raise ValueError("event_type is required (or the older field deteriorated)")
            self.event_type = "deterioration" if self.deteriorated else NO_EVENT
        elif self.deteriorated is not None and self.deteriorated != (self.event_type != NO_EVENT):
            raise ValueError(f"event_type '{self.event_type}' contradicts deteriorated")
        return self


class OutcomePublic(BaseModel):
    id: str
    patient_id: str
    event_type: str
    onset_at: datetime
    occurred_at: datetime = Field(description="The same as onset_at (older name)")
    deteriorated: bool
    source: str
    organisation: str | None
    recorded_by: str
    recorded_at: datetime


@router.post(
    "",
    name="record_outcome",
    status_code=201,
    response_model=OutcomePublic,
    responses={**NOT_FOUND, **INVALID},
)
def record_outcome(
    body: OutcomeCreate, request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Record what happened to a patient (event type, onset, source); immutable and audited."""
    assert body.event_type is not None  # set by the validator
    with transaction(request.app.state.sessions) as session:
        patient = services.patients.get_visible(session, principal, body.patient_id, write=True)
        return OutcomeService.record(
            session,
            patient,
            event_type=body.event_type,
            onset_at=body.onset_at,
            source=body.source,
            recorded_by=principal.subject,
        )
