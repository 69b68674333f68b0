"""Enrolment and the patient record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api.deps import ERRORS, INVALID, NOT_FOUND, ReadSession, ServicesDep
from service.db.tables import Assessment
from service.db.unit_of_work import lock_patients, write
from service.domain.patients import (
    PatientCreate,
    PatientPublic,
    TargetSaturationBody,
    to_public,
)
from service.domain.sharing import (
    GrantCreate,
    GrantPublic,
    SharingService,
    TransferCreate,
    TransferPublic,
    grant_public,
    transfer_public,
)
from service.security import visibility
from service.security.deps import CurrentPrincipal

router = APIRouter(prefix="/api/v1/patients", tags=["patients"], responses=ERRORS)

# OpenAPI links: what a client (and a stateful fuzzer) can do next with an enrolled patient's id.
_PATIENT_ID = {"patient_id": "$response.body#/id"}
PATIENT_LINKS: dict[str, Any] = {
    "GetPatient": {
        "operationId": "get_patient_api_v1_patients__patient_id__get",
        "parameters": _PATIENT_ID,
    },
    "ListAssessments": {
        "operationId": "list_patient_assessments_api_v1_patients__patient_id__assessments_get",
        "parameters": _PATIENT_ID,
    },
    "SetTargetSaturation": {
        "operationId": "set_target_saturation_api_v1_patients__patient_id__target_saturation_put",
        "parameters": _PATIENT_ID,
    },
    "CreateOverride": {
        "operationId": "create_override_api_v1_patients__patient_id__overrides_post",
        "parameters": _PATIENT_ID,
    },
}


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
    supersedes_id: str | None = Field(
        None, description="The assessment this one replaced (its input was corrected)"
    )
    superseded_by: str | None = Field(
        None, description="Set when a later assessment replaced this one; it stays on record"
    )


@router.post(
    "",
    name="enrol_patient",
    status_code=201,
    response_model=PatientPublic,
    responses={
        **INVALID,
        200: {
            "description": "Already enrolled with the same details (a repeated request)",
            "links": PATIENT_LINKS,
        },
        201: {"description": "Enrolled", "links": PATIENT_LINKS},
        409: {"description": "Already enrolled with different details"},
    },
)
def enrol_patient(
    body: PatientCreate,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> PatientPublic:
    """Enrol a patient on a pathway (identifier check digits verified).

    Idempotent: the same person with the same body again answers 200 with the existing
    patient (a retry that reached another replica), a different body 409.
    """

    def work(session: Session) -> tuple[PatientPublic, bool]:
        patient, created = services.patients.enrol(session, principal, body)
        return to_public(patient), created

    public, created = write(request.app.state.sessions, work)
    if not created:
        response.status_code = 200
    return public


@router.get("/{patient_id}", name="get_patient", response_model=PatientPublic, responses=NOT_FOUND)
def get_patient(
    patient_id: str, principal: CurrentPrincipal, session: ReadSession, services: ServicesDep
) -> PatientPublic:
    return to_public(services.patients.get_visible(session, principal, patient_id))


@router.put(
    "/{patient_id}/target-saturation",
    name="set_target_saturation",
    response_model=PatientPublic,
    responses={**NOT_FOUND, **INVALID},
)
def set_target_saturation(
    patient_id: str,
    body: TargetSaturationBody,
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> PatientPublic:
    """Set the prescribed SpO2 target ("88-92": NEWS2 scale 2); the patient is re-scored."""

    def work(session: Session) -> PatientPublic:
        # Re-scoring writes the worklist: the patient's lock, as ingestion takes it.
        lock_patients(session, [patient_id])
        patient = services.patients.set_target_saturation(
            session, principal, patient_id, body.target_saturation
        )
        services.scoring.score(session, patient, "target-saturation")
        return to_public(patient)

    return write(request.app.state.sessions, work)


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
    ids = [r.id for r in rows]
    successors = dict(
        session.execute(
            select(Assessment.supersedes_id, Assessment.id).where(Assessment.supersedes_id.in_(ids))
        ).all()
    )
    out = []
    for r in rows:
        public = AssessmentPublic.model_validate(r, from_attributes=True)
        public.superseded_by = successors.get(r.id)
        out.append(public)
    return out


# ---- sharing on purpose: transfer and time-limited read grants (service.domain.sharing) ------


@router.post(
    "/{patient_id}/transfer",
    name="transfer_patient",
    status_code=201,
    response_model=TransferPublic,
    responses={**NOT_FOUND, **INVALID},
)
def transfer_patient(
    patient_id: str, body: TransferCreate, request: Request, principal: CurrentPrincipal
) -> TransferPublic:
    """Move the patient's follow-up, with its history, to another unit or organisation."""

    def work(session: Session) -> TransferPublic:
        # The open worklist item moves too: the patient's lock, as ingestion takes it.
        lock_patients(session, [patient_id])
        return transfer_public(SharingService.transfer(session, principal, patient_id, body))

    return write(request.app.state.sessions, work)


@router.get(
    "/{patient_id}/transfers",
    name="list_patient_transfers",
    response_model=list[TransferPublic],
    responses=NOT_FOUND,
)
def list_patient_transfers(
    patient_id: str, principal: CurrentPrincipal, session: ReadSession
) -> list[TransferPublic]:
    """Where the patient's follow-up has been, oldest first."""
    return [transfer_public(t) for t in SharingService.transfers(session, principal, patient_id)]


@router.post(
    "/{patient_id}/grants",
    name="grant_patient_access",
    status_code=201,
    response_model=GrantPublic,
    responses={**NOT_FOUND, **INVALID},
)
def grant_patient_access(
    patient_id: str, body: GrantCreate, request: Request, principal: CurrentPrincipal
) -> GrantPublic:
    """Give a named organisation read access to this patient until valid_until."""
    return write(
        request.app.state.sessions,
        lambda session: grant_public(SharingService.grant(session, principal, patient_id, body)),
    )


@router.get(
    "/{patient_id}/grants",
    name="list_patient_grants",
    response_model=list[GrantPublic],
    responses=NOT_FOUND,
)
def list_patient_grants(
    patient_id: str, principal: CurrentPrincipal, session: ReadSession
) -> list[GrantPublic]:
    """The patient's grants, newest first, active or not (only the holder lists them)."""
    visibility.visible_patient(session, principal, patient_id, write=True)
    return [grant_public(g) for g in SharingService.grants(session, patient_id)]


@router.post(
    "/{patient_id}/grants/{grant_id}/revoke",
    name="revoke_patient_grant",
    response_model=GrantPublic,
    responses={**NOT_FOUND, 409: {"description": "Already revoked"}},
)
def revoke_patient_grant(
    patient_id: str, grant_id: str, request: Request, principal: CurrentPrincipal
) -> GrantPublic:
    """End a grant now (the row stays, with who revoked it and when)."""
    return write(
        request.app.state.sessions,
        lambda session: grant_public(
            SharingService.revoke(session, principal, patient_id, grant_id)
        ),
    )
