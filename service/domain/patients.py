"""Enrolment and patient lookup, scoped to what the caller may see."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.identifiers import IdentifierError, mask, parse_person_identifier
from service.db.tables import Patient
from service.domain.pathways import PathwayService
from service.errors import Conflict, Forbidden, InvalidInput
from service.security import visibility
from service.security.principal import Principal


class PatientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identifier: str = Field(
        description="Fødselsnummer or D-number (11 digits)", min_length=1, max_length=32
    )
    birth_date: date
    sex: Literal["female", "male", "other", "unknown"]
    pathway: str = Field(min_length=1, max_length=64)
    organisation: str = Field(pattern=r"^\d{9}$", description="Organisation number (9 digits)")
    unit: str = Field(min_length=1, max_length=64)
    confidential_to_guardians: bool = Field(
        default=False, description="Patient aged 12–16 withholds information from parents"
    )
    options: dict[str, bool] = Field(
        default_factory=dict,
        description='Pathway options, e.g. {"hypercapnic_failure": true} '
        "for NEWS2 SpO2 scale 2 (confirmed hypercapnic respiratory failure)",
    )


class PatientPublic(BaseModel):
    id: str
    display_identifier: str = Field(description="Masked identifier: birth date digits only")
    birth_date: date
    age_years: int
    sex: str
    pathway: str
    organisation: str
    unit: str
    confidential_to_guardians: bool
    options: dict[str, bool]
    created_at: datetime


def age_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def to_public(p: Patient) -> PatientPublic:
    birth = p.birth_date if isinstance(p.birth_date, date) else p.birth_date.date()
    return PatientPublic(
        id=p.id,
        display_identifier=mask(p.identifier_value),
        birth_date=birth,
        age_years=age_years(birth, datetime.now(UTC).date()),
        sex=p.sex,
        pathway=p.pathway_id,
        organisation=p.organisation,
        unit=p.unit,
        confidential_to_guardians=p.confidential_to_guardians,
        options=dict(p.pathway_options or {}),
        created_at=p.created_at,
    )


class PatientService:
    def __init__(self, pathways: PathwayService) -> None:
        self.pathways = pathways

    def enrol(self, session: Session, principal: Principal, body: PatientCreate) -> Patient:
        try:
            ident = parse_person_identifier(body.identifier)
        except IdentifierError as exc:
            raise InvalidInput(str(exc), location="identifier") from exc
        if ident.birth_date is not None and ident.birth_date != body.birth_date:
            raise InvalidInput(
                "birth_date does not match the date part of the identifier", location="birth_date"
            )
        if body.birth_date > datetime.now(UTC).date():
            raise InvalidInput("birth_date is in the future", location="birth_date")
        if body.pathway not in self.pathways.known_in(session):
            raise InvalidInput(f"unknown pathway '{body.pathway}'", location="pathway")
        _, pathway, _ = self.pathways.current(session, body.pathway)
        offered = {o.id for o in pathway.options}
        unknown = sorted(set(body.options) - offered)
        if unknown:
            raise InvalidInput(
                f"pathway '{body.pathway}' has no option '{unknown[0]}'"
                f" (it offers: {', '.join(sorted(offered)) or 'none'})",
                location="options",
            )
        if not visibility.may_enrol(principal, body.organisation, body.unit):
            raise Forbidden(
                "you may only enrol patients in your own units"
                if body.organisation in principal.organisations
                else "you may only enrol patients in your own organisation"
            )
        existing = session.scalar(select(Patient).where(Patient.identifier_value == ident.value))
        if existing is not None:
            if visibility.may_read_patient(principal, existing):
                raise Conflict(f"this person is already enrolled as Patient/{existing.id}")
            # Another organisation's (or unit's) patient: say so without naming the record; a
            # transfer of the follow-up is made by the organisation that holds it.
            raise Conflict(
                "this person is already enrolled in home follow-up outside your organisation or "
                "units; the organisation holding the follow-up can transfer it"
            )
        patient = Patient(
            id=str(uuid.uuid4()),
            identifier_system=ident.system,
            identifier_value=ident.value,
            birth_date=body.birth_date,
            sex=body.sex,
            pathway_id=body.pathway,
            organisation=body.organisation,
            unit=body.unit,
            confidential_to_guardians=body.confidential_to_guardians,
            pathway_options=dict(body.options),
            created_at=datetime.now(UTC),
            created_by=principal.subject,
        )
        session.add(patient)
        session.flush()
        return patient

    @staticmethod
    def get_visible(session: Session, principal: Principal, patient_id: str) -> Patient:
        """The patient, or 404 when it lies outside what the caller may see (visibility)."""
        return visibility.visible_patient(session, principal, patient_id)
