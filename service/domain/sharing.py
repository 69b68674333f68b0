"""Sharing on purpose: transfer a patient's follow-up, or give an organisation time-limited read
access ("samhandling i og mellom sjukehus", and with primary care).

Only a caller who may change the patient (service.security.visibility) transfers or grants. A
transfer moves the patient, its open worklist item and with them its whole history to the new
unit or organisation; the sending side keeps nothing but the transfer record. A grant gives one
named organisation (HelseID ``orgnr_parent``) read access until ``valid_until``; it is revocable,
every use is in the audit log, and the patient's access report lists it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.tables import PatientAccessGrant, PatientTransfer, WorklistItem
from service.domain.free_text import refuse_person_number
from service.domain.worklist import ACTIVE_STATES
from service.errors import Conflict, InvalidInput, NotFound
from service.security import visibility
from service.security.principal import Principal

# A grant is for a period of shared care, not for good: renew it when the care continues.
MAX_GRANT_DAYS = 365
_ORGNR = r"^\d{9}$"


class TransferCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organisation: str = Field(pattern=_ORGNR, description="Receiving organisation number")
    unit: str = Field(min_length=1, max_length=64, description="Receiving unit")
    reason: str = Field(min_length=3, max_length=1000)
    legal_basis: str = Field(
        min_length=3,
        max_length=200,
        description="e.g. helsepersonelloven § 45 (sharing with those giving care)",
    )


class TransferPublic(BaseModel):
    id: str
    patient_id: str
    from_organisation: str
    from_unit: str
    to_organisation: str
    to_unit: str
    reason: str
    legal_basis: str
    transferred_by: str
    transferred_at: datetime


class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organisation: str = Field(pattern=_ORGNR, description="Organisation given read access")
    valid_until: AwareDatetime = Field(description=f"At most {MAX_GRANT_DAYS} days ahead")
    reason: str = Field(min_length=3, max_length=1000)
    legal_basis: str = Field(min_length=3, max_length=200)


class GrantPublic(BaseModel):
    id: str
    patient_id: str
    grantee_organisation: str
    reason: str
    legal_basis: str
    valid_from: datetime
    valid_until: datetime
    granted_by: str
    granted_by_organisation: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    active: bool


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def transfer_public(t: PatientTransfer) -> TransferPublic:
    return TransferPublic.model_validate(
        {
            **{c: getattr(t, c) for c in TransferPublic.model_fields},
            "transferred_at": _aware(t.transferred_at),
        }
    )


def grant_public(g: PatientAccessGrant, now: datetime | None = None) -> GrantPublic:
    now = now or datetime.now(UTC)
    fields: dict[str, Any] = {c: getattr(g, c) for c in GrantPublic.model_fields if c != "active"}
    for name in ("valid_from", "valid_until", "created_at", "revoked_at"):
        if fields[name] is not None:
            fields[name] = _aware(fields[name])
    active = g.revoked_at is None and fields["valid_from"] <= now < fields["valid_until"]
    return GrantPublic.model_validate({**fields, "active": active})


class SharingService:
    @staticmethod
    def transfer(
        session: Session, principal: Principal, patient_id: str, body: TransferCreate
    ) -> PatientTransfer:
        patient = visibility.visible_patient(session, principal, patient_id, write=True)
        refuse_person_number(body.reason, "reason")
        refuse_person_number(body.legal_basis, "legal_basis")
        if (patient.organisation, patient.unit) == (body.organisation, body.unit):
            raise InvalidInput(
                "the patient is already followed up by this organisation and unit",
                location="unit",
            )
        now = datetime.now(UTC)
        record = PatientTransfer(
            id=str(uuid.uuid4()),
            patient_id=patient.id,
            from_organisation=patient.organisation,
            from_unit=patient.unit,
            to_organisation=body.organisation,
            to_unit=body.unit,
            reason=body.reason.strip(),
            legal_basis=body.legal_basis.strip(),
            transferred_by=principal.subject,
            transferred_at=now,
        )
        session.add(record)
        patient.organisation, patient.unit = body.organisation, body.unit
        # The open item goes with the patient, so the receiving unit sees what is pending.
        for item in session.scalars(
            select(WorklistItem).where(
                WorklistItem.patient_id == patient.id, WorklistItem.state.in_(ACTIVE_STATES)
            )
        ):
            item.organisation, item.unit = body.organisation, body.unit
        session.flush()
        return record

    @staticmethod
    def transfers(session: Session, principal: Principal, patient_id: str) -> list[PatientTransfer]:
        visibility.visible_patient(session, principal, patient_id)
        return SharingService.transfer_history(session, patient_id)

    @staticmethod
    def transfer_history(session: Session, patient_id: str) -> list[PatientTransfer]:
        """Every transfer of the patient, oldest first (the caller has checked visibility)."""
        return list(
            session.scalars(
                select(PatientTransfer)
                .where(PatientTransfer.patient_id == patient_id)
                .order_by(PatientTransfer.transferred_at)
            )
        )

    @staticmethod
    def grant(
        session: Session, principal: Principal, patient_id: str, body: GrantCreate
    ) -> PatientAccessGrant:
        patient = visibility.visible_patient(session, principal, patient_id, write=True)
        refuse_person_number(body.reason, "reason")
        refuse_person_number(body.legal_basis, "legal_basis")
        if body.organisation == patient.organisation:
            raise InvalidInput(
                "the organisation already holds the patient's follow-up", location="organisation"
            )
        now = datetime.now(UTC)
        until = body.valid_until.astimezone(UTC)
        if until <= now:
            raise InvalidInput("valid_until must lie in the future", location="valid_until")
        if until > now + timedelta(days=MAX_GRANT_DAYS):
            raise InvalidInput(
                f"a grant lasts at most {MAX_GRANT_DAYS} days; renew it when care continues",
                location="valid_until",
            )
        record = PatientAccessGrant(
            id=str(uuid.uuid4()),
            patient_id=patient.id,
            grantee_organisation=body.organisation,
            reason=body.reason.strip(),
            legal_basis=body.legal_basis.strip(),
            valid_from=now,
            valid_until=until,
            granted_by=principal.subject,
            granted_by_organisation=principal.organisation,
            created_at=now,
        )
        session.add(record)
        session.flush()
        return record

    @staticmethod
    def grants(session: Session, patient_id: str) -> list[PatientAccessGrant]:
        """Every grant of the patient, newest first (the caller has checked visibility)."""
        return list(
            session.scalars(
                select(PatientAccessGrant)
                .where(PatientAccessGrant.patient_id == patient_id)
                .order_by(PatientAccessGrant.created_at.desc(), PatientAccessGrant.id)
            )
        )

    @staticmethod
    def revoke(
        session: Session, principal: Principal, patient_id: str, grant_id: str
    ) -> PatientAccessGrant:
        visibility.visible_patient(session, principal, patient_id, write=True)
        grant = session.get(PatientAccessGrant, grant_id)
        if grant is None or grant.patient_id != patient_id:
            raise NotFound(f"grant {grant_id} not found")
        if grant.revoked_at is not None:
            raise Conflict(f"grant {grant_id} was already revoked")
        grant.revoked_at, grant.revoked_by = datetime.now(UTC), principal.subject
        session.flush()
        return grant
