"""Enrolment and patient lookup, scoped to what the caller may see."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.identifiers import IdentifierError, mask, parse_person_identifier
from service.db.tables import Patient
from service.db.unit_of_work import PERSON_LOCKS, lock_all
from service.domain.free_text import refuse_person_number
from service.domain.pathways import PathwayService
from service.errors import Conflict, Forbidden, InvalidInput
from service.security import visibility
from service.security.principal import Principal, Role

# A prescribed SpO2 target. 88–92 % is for confirmed hypercapnic respiratory failure (BTS 2017,
# GOLD 2024) and scores SpO2 on NEWS2 scale 2 (RCP 2017); 94–98 % is everyone else's (scale 1).
TargetSaturation = Literal["88-92", "94-98"]
SCALE2_TARGET = "88-92"
# The pathway option that switches NEWS2 to scale 2 (models/pathways/copd.json).
SCALE2_OPTION = "hypercapnic_failure"


class PatientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identifier: str = Field(
        description="Fødselsnummer, D-number or felles hjelpenummer (11 digits)",
        min_length=1,
        max_length=32,
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
    target_saturation: TargetSaturation | None = Field(
        default=None,
        description='Prescribed SpO2 target: "88-92" (confirmed hypercapnic respiratory '
        'failure: NEWS2 scores SpO2 on scale 2) or "94-98" (scale 1)',
    )
    display_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The name clinicians work by, e.g. 'Kari Nordmann'. Personal data: shown "
        "to those who may see the patient, never logged",
    )


class TargetSaturationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_saturation: TargetSaturation = Field(
        description='"88-92" (NEWS2 SpO2 scale 2) or "94-98" (scale 1)'
    )


class PatientPublic(BaseModel):
    id: str
    display_name: str | None = Field(description="The name clinicians work by")
    display_identifier: str = Field(description="Masked identifier: birth date digits only")
    birth_date: date
    age_years: int
    sex: str
    pathway: str
    organisation: str
    unit: str
    confidential_to_guardians: bool
    options: dict[str, bool]
    target_saturation: TargetSaturation | None = Field(
        description="Prescribed SpO2 target; null: not set (NEWS2 scale 1)"
    )
    created_at: datetime


def age_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def to_public(p: Patient) -> PatientPublic:
    birth = p.birth_date if isinstance(p.birth_date, date) else p.birth_date.date()
    return PatientPublic(
        id=p.id,
        display_name=p.display_name,
        display_identifier=mask(p.identifier_value),
        birth_date=birth,
        age_years=age_years(birth, datetime.now(UTC).date()),
        sex=p.sex,
        pathway=p.pathway_id,
        organisation=p.organisation,
        unit=p.unit,
        confidential_to_guardians=p.confidential_to_guardians,
        options=dict(p.pathway_options or {}),
        target_saturation=target_of(p),
        created_at=p.created_at,
    )


def target_of(p: Patient) -> TargetSaturation | None:
    options = p.pathway_options or {}
    if SCALE2_OPTION not in options:
        return None
    return "88-92" if options[SCALE2_OPTION] else "94-98"


def with_target(
    pathway: Any, options: dict[str, bool], target: TargetSaturation
) -> dict[str, bool]:
    """The patient's options with the switch that a target saturation implies."""
    offered = {o.id: o for o in pathway.options}
    switch = offered.get(SCALE2_OPTION)
    if switch is None or "news2-scale2" not in switch.replaces_rule_sets.values():
        raise InvalidInput(
            f"pathway '{pathway.id}' does not score NEWS2 SpO2, so it has no target saturation",
            location="target_saturation",
        )
    wanted = target == SCALE2_TARGET
    if options.get(SCALE2_OPTION, wanted) != wanted:
        raise InvalidInput(
            f"target_saturation {target} contradicts options.{SCALE2_OPTION}",
            location="target_saturation",
        )
    return {**options, SCALE2_OPTION: wanted}


class PatientService:
    def __init__(self, pathways: PathwayService) -> None:
        self.pathways = pathways

    def enrol(
        self, session: Session, principal: Principal, body: PatientCreate
    ) -> tuple[Patient, bool]:
        """The enrolled patient, and True when this call created it (False: a repeat)."""
        try:
            ident = parse_person_identifier(body.identifier)
        except IdentifierError as exc:
            raise InvalidInput(str(exc), location="identifier") from exc
        if not ident.may_be_born_on(body.birth_date):
            raise InvalidInput(
                "birth_date does not match the date part of the identifier", location="birth_date"
            )
        if body.birth_date > datetime.now(UTC).date():
            raise InvalidInput("birth_date is in the future", location="birth_date")
        if body.pathway not in self.pathways.known_in(session, body.organisation):
            raise InvalidInput(f"unknown pathway '{body.pathway}'", location="pathway")
        _, pathway, _ = self.pathways.current(session, body.pathway, body.organisation, body.unit)
        offered = {o.id for o in pathway.options}
        unknown = sorted(set(body.options) - offered)
        if unknown:
            raise InvalidInput(
                f"pathway '{body.pathway}' has no option '{unknown[0]}'"
                f" (it offers: {', '.join(sorted(offered)) or 'none'})",
                location="options",
            )
        name = " ".join((body.display_name or "").split()) or None
        refuse_person_number(name, "display_name")
        options = dict(body.options)
        if body.target_saturation is not None:
            options = with_target(pathway, options, body.target_saturation)
        if not visibility.may_enrol(principal, body.organisation, body.unit):
            raise Forbidden(
                "you may only enrol patients in your own units"
                if body.organisation in principal.organisations
                else "you may only enrol patients in your own organisation"
            )
        # Two replicas enrolling one person (a sender's retry) serialise here.
        lock_all(session, PERSON_LOCKS, [ident.value])
        existing = self._enrolled(session, principal, body, ident.value, options)
        if existing is not None:
            return existing, False
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
            pathway_options=options,
            display_name=name,
            created_at=datetime.now(UTC),
            created_by=principal.subject,
        )
        try:
            with session.begin_nested():
                session.add(patient)
                session.flush()
        except IntegrityError:
            # Enrolled by a writer that took no lock (SQLite has one writer; this is the
            # database's last word): answered as if this request had waited for it.
            session.expunge(patient)
            existing = self._enrolled(session, principal, body, ident.value, options)
            if existing is None:
                raise
            return existing, False
        return patient, True

    @staticmethod
    def _enrolled(
        session: Session,
        principal: Principal,
        body: PatientCreate,
        identifier_value: str,
        options: dict[str, Any],
    ) -> Patient | None:
        """The person's enrolment when this request repeats it (visible to the caller, in the
        same organisation, with the same details); None when the person is not enrolled.

        A retry of an enrolment (the first answer was lost, or it reached another replica)
        gets the existing patient back; anything else about an enrolled person is a conflict.
        """
        existing = session.scalar(
            select(Patient).where(Patient.identifier_value == identifier_value)
        )
        if existing is None:
            return None
        if visibility.may_read_patient(principal, existing):
            if _same_enrolment(existing, body, options):
                return existing
            raise Conflict(
                f"this person is already enrolled as Patient/{existing.id} with other details"
            )
        # Another organisation's (or unit's) patient: say so without naming the record; a
        # transfer of the follow-up is made by the organisation that holds it.
        raise Conflict(
            "this person is already enrolled in home follow-up outside your organisation or "
            "units; the organisation holding the follow-up can transfer it"
        )

    def set_target_saturation(
        self, session: Session, principal: Principal, patient_id: str, target: TargetSaturation
    ) -> Patient:
        """Set the prescribed SpO2 target; the caller re-scores the patient under it."""
        patient = self.get_visible(session, principal, patient_id, write=True)
        if principal.role not in (Role.CLINICIAN, Role.ADMIN):
            raise Forbidden("only clinicians set a patient's target saturation")
        pathway = self.pathways.for_patient(session, patient).doc
        current = dict(patient.pathway_options or {})
        current.pop(SCALE2_OPTION, None)
        patient.pathway_options = with_target(pathway, current, target)
        session.flush()
        return patient

    @staticmethod
    def get_visible(
        session: Session, principal: Principal, patient_id: str, *, write: bool = False
    ) -> Patient:
        """The patient, or 404 when it lies outside what the caller may see (``write``: may
        change); the rule is service.security.visibility's."""
        return visibility.visible_patient(session, principal, patient_id, write=write)


def _same_enrolment(patient: Patient, body: PatientCreate, options: dict[str, Any]) -> bool:
    stored: date | datetime = patient.birth_date
    birth = stored.date() if isinstance(stored, datetime) else stored
    return (
        birth == body.birth_date
        and patient.sex == body.sex
        and patient.pathway_id == body.pathway
        and patient.organisation == body.organisation
        and patient.unit == body.unit
        and bool(patient.confidential_to_guardians) == body.confidential_to_guardians
        and dict(patient.pathway_options or {}) == options
    )
