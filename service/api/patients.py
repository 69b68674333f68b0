"""Enrolment and the patient record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from service.api.deps import ERRORS, INVALID, NOT_FOUND, ReadSession, ServicesDep
from service.db.engine import transaction
from service.db.tables import Assessment
from service.domain.patients import PatientCreate, PatientPublic, to_public
from service.security.deps import CurrentPrincipal

router = APIRouter(prefix="/api/v1/patients", tags=["patients"], responses=ERRORS)


class AssessmentPublic(BaseModel):
    id: str
    created_at: datetime
    as_of: datetime
    trigger: str
    model_name: str | None
    model_version: str | None
    pathway_id: str
    pathway_version: int
    rule_set_hash: str
    probability: float | None
    level: str
    level_source: str = Field(
        description="Where the level came from: rule (a pathway rule, a hard safety limit), "
        "model (the model at the pathway's operating point), rule+model, or none"
    )
    features: list[float | None]
    explanation: dict[str, Any]
    basis: list[str]


@router.post(
    "",
    name="enrol_patient",
    status_code=201,
    response_model=PatientPublic,
    responses={**INVALID, 409: {"description": "Already enrolled"}},
)
def enrol_patient(
    body: PatientCreate, request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> PatientPublic:
    """Enrol a patient on a pathway (identifier check digits verified)."""
    with transaction(request.app.state.sessions) as session:
        patient = services.patients.enrol(session, principal, body)
        return to_public(patient)


@router.get("/{patient_id}", name="get_patient", response_model=PatientPublic, responses=NOT_FOUND)
def get_patient(
    patient_id: str, principal: CurrentPrincipal, session: ReadSession, services: ServicesDep
) -> PatientPublic:
    return to_public(services.patients.get_visible(session, principal, patient_id))


@router.get(
    "/{patient_id}/assessments",
    name="list_patient_assessments",
    response_model=list[AssessmentPublic],
    responses=NOT_FOUND,
)
def list_patient_assessments(
    patient_id: str,
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
    limit: int = Query(50, ge=1, le=500),
) -> list[AssessmentPublic]:
    """The patient's assessments, newest first, each with its full explanation."""
    services.patients.get_visible(session, principal, patient_id)
    rows = session.scalars(
        select(Assessment)
        .where(Assessment.patient_id == patient_id)
        .order_by(Assessment.created_at.desc())
        .limit(limit)
    ).all()
    return [AssessmentPublic.model_validate(r, from_attributes=True) for r in rows]
