"""Who may see or change what: the one visibility rule of the service.

Every route, FHIR search, web page, CDS Hooks call, audit read and monitoring read asks this
module; nothing else writes an organisation or unit filter. Organisations are kept apart by
default and work together only on purpose:

- **admin** (operations of the regional platform) sees and changes everything;
- **every other role** is confined to the organisations its token acts for (the HelseID
  ``orgnr_parent`` claim, and for an integration client the organisations it sends for), and a
  token that names units is narrowed to those units, whatever its role;
- a token acting for a **parent or guardian** sees exactly the one child its request names
  (bound at authorisation, ``Principal.represented_patient``), whatever search parameter it uses;
- an organisation given a **grant** (``PatientAccessGrant``: time-limited, revocable, audited)
  may *read* that one patient; it never changes it, and the patient is not on its worklist;
- patients are **changed** only inside those bounds; anything outside them is answered as if it
  did not exist (404, or "not an enrolled patient"), so a caller cannot learn that a record exists
  elsewhere. A patient moves between organisations only by a recorded transfer.

Drift reports belong to an organisation, or to no organisation (regional: an aggregate over the
shared model, run by the schedule). Audit rows are read by the organisation of the actor or of
the patient. Pathways: the regional templates are read by everyone and changed by admin; an
organisation's versions are read and published by that organisation's editors, and a change to
thresholds or levels is approved by a second clinician of the organisation (four-eyes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, exists, false, or_, select, true
from sqlalchemy.orm import object_session

from models.rules.schema import Editors
from service.db.tables import AuditEntry, DriftReport, Patient, PatientAccessGrant
from service.errors import NotFound
from service.security.principal import Principal, Role

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


# ---- the rule on one organisation / unit pair ---------------------------------------------


def sees_everything(principal: Principal) -> bool:
    return principal.role is Role.ADMIN


def in_scope(principal: Principal, organisation: str | None, unit: str | None) -> bool:
    """Whether an (organisation, unit) lies inside what the principal acts for."""
    if sees_everything(principal):
        return True
    if organisation not in principal.organisations:
        return False
    return principal.units is None or unit in principal.units


# ---- patients -------------------------------------------------------------------------------


def _own_patients(principal: Principal) -> ColumnElement[bool]:
    """SQL: patients inside the principal's organisations and units (grants not included)."""
    if sees_everything(principal):
        clause: ColumnElement[bool] = true()
    else:
        clause = Patient.organisation.in_(principal.organisations)
        if principal.units is not None:
            clause = clause & Patient.unit.in_(principal.units)
    if principal.guardian_proxy:
        # A guardian context is about one child, named in the request; nothing named, nothing seen.
        clause = clause & (
            Patient.id == principal.represented_patient
            if principal.represented_patient
            else false()
        )
    return clause


def _active_grant(principal: Principal, patient_id: Any) -> ColumnElement[bool]:
    """SQL: a grant in force now gives one of the principal's organisations this patient."""
    now = datetime.now(UTC)
    return exists().where(
        PatientAccessGrant.patient_id == patient_id,
        PatientAccessGrant.grantee_organisation.in_(principal.organisations),
        PatientAccessGrant.valid_from <= now,
        PatientAccessGrant.valid_until > now,
        PatientAccessGrant.revoked_at.is_(None),
    )


def _shares(principal: Principal) -> bool:
    """Whether grants can widen this caller's reads (a guardian context is one child only)."""
    return not sees_everything(principal) and not principal.guardian_proxy


def patient_filter(
    principal: Principal, *, write: bool = False, shared: bool = True
) -> ColumnElement[bool]:
    """SQL condition over `Patient` columns: the patients a query may return to this caller.

    ``write``: only patients the caller may change (no grants); ``shared=False``: leave out
    patients merely shared with the caller (a worklist is the holding unit's to work).
    """
    own = _own_patients(principal)
    if write or not shared or not _shares(principal):
        return own
    return or_(own, _active_grant(principal, Patient.id))


def may_read_patient(principal: Principal, patient: Any) -> bool:
    if _may(principal, patient):
        return True
    session = object_session(patient) if _shares(principal) else None
    return session is not None and bool(
        session.scalar(select(_active_grant(principal, patient.id)))
    )


def may_change_patient(principal: Principal, patient: Any) -> bool:
    return _may(principal, patient)


def _may(principal: Principal, patient: Any) -> bool:
    if principal.guardian_proxy and patient.id != principal.represented_patient:
        return False
    return in_scope(principal, patient.organisation, patient.unit)


def visible_patient(
    session: Session, principal: Principal, patient_id: str, *, write: bool = False
) -> Patient:
    """The patient, or 404 when it does not exist or lies outside what the caller may see.

    Not 403: a caller must not learn that a record exists elsewhere.
    """
    patient = session.get(Patient, patient_id)
    allowed = patient is not None and (
        may_change_patient(principal, patient) if write else may_read_patient(principal, patient)
    )
    if patient is None or not allowed:
        raise NotFound(f"Patient/{patient_id} not found")
    return patient


def may_enrol(principal: Principal, organisation: str, unit: str) -> bool:
    """A new patient is enrolled only inside the caller's organisations and units."""
    return in_scope(principal, organisation, unit)


def visible_units(session: Session, principal: Principal) -> list[str]:
    """The units a caller may filter its worklist by."""
    if principal.units is not None:
        return sorted(principal.units)
    query = select(Patient.unit).distinct().where(_own_patients(principal))
    return sorted(session.scalars(query))


# ---- escalations ----------------------------------------------------------------------------


def escalation_scope(principal: Principal) -> ColumnElement[bool]:
    """SQL over `WorklistItem`: where an escalation may reach the principal, by name (role,
    unit or HPR number), beyond their own units: anywhere in their organisations."""
    from service.db.tables import WorklistItem

    if sees_everything(principal):
        return true()
    if principal.guardian_proxy:
        return false()
    return WorklistItem.organisation.in_(principal.organisations)


def may_act_on_escalation(principal: Principal, organisation: str) -> bool:
    """A recipient named by an escalation may read and act on that item (not a guardian)."""
    return sees_everything(principal) or (
        not principal.guardian_proxy and organisation in principal.organisations
    )


# ---- drift reports ---------------------------------------------------------------------------


def report_filter(principal: Principal) -> ColumnElement[bool]:
    """SQL over `DriftReport`: reports of the caller's organisations, and regional ones."""
    if sees_everything(principal):
        return true()
    return or_(
        DriftReport.organisation.is_(None),
        DriftReport.organisation.in_(principal.organisations),
    )


def may_read_report(principal: Principal, organisation: str | None) -> bool:
    return (
        sees_everything(principal)
        or organisation is None
        or organisation in principal.organisations
    )


def may_sign_report(principal: Principal, organisation: str | None) -> bool:
    """A report of an organisation is signed off by that organisation's compliance officer."""
    return may_read_report(principal, organisation)


def may_run_report(principal: Principal, organisation: str | None) -> bool:
    """An organisation's report is run by that organisation (or admin); regional runs by anyone
    allowed to run reports, since they aggregate over the one shared model."""
    return may_read_report(principal, organisation)


# ---- the audit log ---------------------------------------------------------------------------


def audit_filter(principal: Principal) -> ColumnElement[bool]:
    """SQL over `AuditEntry`: rows of the caller's organisations' actors or patients."""
    if sees_everything(principal):
        return true()
    owned = select(Patient.id).where(Patient.organisation.in_(principal.organisations))
    return or_(
        AuditEntry.organisation.in_(principal.organisations),
        AuditEntry.patient_id.in_(owned),
    )


def may_read_audit_of(session: Session, principal: Principal, patient_id: str) -> bool:
    """A patient's audit trail and access report: read by the organisation that holds the
    record (the data controller), not by one a patient was shared with."""
    if sees_everything(principal):
        return True
    patient = session.get(Patient, patient_id)
    return patient is not None and patient.organisation in principal.organisations


# ---- pathways --------------------------------------------------------------------------------
# A pathway version's scope is the regional template library (organisation None, owned by
# admin), an organisation, or one unit of an organisation (service.domain.pathways.in_force).


def may_read_pathway_scope(principal: Principal, organisation: str | None) -> bool:
    """Templates are for everyone; an organisation's own versions for that organisation."""
    return (
        organisation is None
        or sees_everything(principal)
        or organisation in principal.organisations
    )


def may_edit_pathway(
    principal: Principal, organisation: str | None, unit: str | None, editors: Editors
) -> bool:
    """Publish or propose in a scope, under the ``editors`` of the version in force there.

    The template library is admin's. In an organisation: admin, or a clinician of that
    organisation (and of the unit, for a unit's version) whom the pathway's editors admit.
    """
    if sees_everything(principal):
        return True
    if organisation is None or principal.role is not Role.CLINICIAN:
        return False
    if organisation not in principal.organisations:
        return False
    if unit is not None and not in_scope(principal, organisation, unit):
        return False
    if principal.role.value not in editors.roles:
        return False
    units = editors.units
    return not units or principal.units is None or bool(set(units) & set(principal.units))


def may_approve_pathway(
    principal: Principal,
    organisation: str | None,
    unit: str | None,
    editors: Editors,
    author: str,
) -> bool:
    """Four-eyes: a second person, never the author.

    An organisation's change is approved by a clinician of that organisation who may edit the
    pathway there (an administrator may propose but not approve clinical thresholds); a
    template's change by a second administrator.
    """
    if principal.subject == author:
        return False
    if organisation is None:
        return sees_everything(principal)
    return principal.role is Role.CLINICIAN and may_edit_pathway(
        principal, organisation, unit, editors
    )
