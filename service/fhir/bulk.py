"""FHIR Bulk Data export (HL7 Bulk Data Access IG 2.0): pseudonymised NDJSON resources and the
completion manifest. Pure functions: the export job (service.domain.export) reads the store and
hands rows here.

Pseudonymisation, per recipient:
- every id (patient, resource, basis reference) becomes an HMAC-SHA256 of the id, keyed by the
  service's export secret and the recipient, so two recipients cannot join their files and no
  recipient can look a pseudonym up in this service's own FHIR API;
- received resources are rebuilt from a whitelist of elements: identifiers, performers, devices,
  notes, narrative, contained resources, extensions and free-text answers never leave;
- a patient's birth date becomes its year (and the age band of models/features.py as a tag);
- every clinical time of a patient moves by the same secret number of whole days, so intervals
  within the patient are kept and calendar dates are not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from models.features import AGE_BAND_EDGES_YEARS, AGE_BAND_LABELS
from service.fhir.outputs import CODE_SYSTEM, OUTCOME_TEXT, RISK_PROBABILITY

# Resource types an export can hold, in the order files are written.
EXPORT_TYPES: tuple[str, ...] = (
    "Patient",
    "Observation",
    "QuestionnaireResponse",
    "RiskAssessment",
    "PlanDefinition",
)
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
# meta.tag systems that carry the k-anonymity quasi-identifiers researchers need.
AGE_BAND_SYSTEM = f"{CODE_SYSTEM}/age-band"
PATHWAY_SYSTEM = f"{CODE_SYSTEM}/pathway"
UNIT_SYSTEM = f"{CODE_SYSTEM}/unit"
OUTCOME_CATEGORY_SYSTEM = f"{CODE_SYSTEM}/observation-category"
OUTCOME_CODE_SYSTEM = f"{CODE_SYSTEM}/outcome"
OUTCOME_EVENT_SYSTEM = f"{CODE_SYSTEM}/outcome-event-type"
PATHWAY_CANONICAL_BASE = "https://triage.example.org/fhir/PlanDefinition/"
PSEUDONYM_TAG = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "PSEUDED",
    "display": "pseudonymized",
}

# Elements of a received Observation that may leave; everything else is dropped.
_OBSERVATION_KEEP = ("status", "category", "code", "interpretation", "method", "bodySite")
_VALUE_KEEP = (
    "valueQuantity",
    "valueCodeableConcept",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
)
# Answer types of a QuestionnaireResponse that may leave (valueString is free text: never).
_ANSWER_KEEP = (
    "valueBoolean",
    "valueDecimal",
    "valueInteger",
    "valueCoding",
    "valueQuantity",
)
_ANSWER_SHIFT = ("valueDate", "valueDateTime", "valueTime")


def age_band(birth: date, on: date) -> str:
    """The age band label of models/features.py (one definition of the bands)."""
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    index = sum(1 for edge in AGE_BAND_EDGES_YEARS if years >= edge)
    return AGE_BAND_LABELS[index]


@dataclass(frozen=True)
class Pseudonymiser:
    """Keyed hashes and time shifts for one recipient."""

    secret: str
    recipient: str
    max_shift_days: int

    def _mac(self, purpose: str, value: str) -> bytes:
        key = f"{self.secret}\x00{self.recipient}".encode()
        return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()

    def id(self, value: str) -> str:
        """A FHIR id (64 hex characters ≤ 64): the same value gives the same pseudonym."""
        return self._mac("id", value).hex()

    def shift_days(self, patient_id: str) -> int:
        """A secret, non-zero whole number of days in ±max_shift_days, fixed per patient."""
        raw = int.from_bytes(self._mac("shift", patient_id)[:8], "big")
        magnitude = 1 + raw % self.max_shift_days
        return magnitude if raw >> 63 else -magnitude


def shift_time(value: Any, days: int) -> Any:
    """An ISO date or date-time moved by `days`; a year or year-month is already coarse."""
    if not isinstance(value, str) or len(value) < 10:
        return value
    try:
        if len(value) == 10:
            return (date.fromisoformat(value) + timedelta(days=days)).isoformat()
        moved = datetime.fromisoformat(value.replace("Z", "+00:00")) + timedelta(days=days)
    except ValueError:
        return None  # not a time we understand: withheld rather than released unshifted
    text = moved.isoformat()
    return text.replace("+00:00", "Z")


def _meta(extra_tags: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"security": [PSEUDONYM_TAG], **({"tag": extra_tags} if extra_tags else {})}


def patient(
    pseudonyms: Pseudonymiser,
    patient_id: str,
    birth_date: date,
    sex: str,
    pathway: str,
    unit: str,
    on: date,
) -> dict[str, Any]:
    """The pseudonymised Patient: birth year, sex and the k-anonymity quasi-identifiers."""
    return {
        "resourceType": "Patient",
        "id": pseudonyms.id(patient_id),
        "meta": _meta(
            [
                {"system": AGE_BAND_SYSTEM, "code": age_band(birth_date, on)},
                {"system": PATHWAY_SYSTEM, "code": pathway},
                {"system": UNIT_SYSTEM, "code": unit},
            ]
        ),
        "gender": sex if sex in ("male", "female", "other", "unknown") else "unknown",
        "birthDate": f"{birth_date.year:04d}",
    }


def _subject(pseudonyms: Pseudonymiser, patient_id: str) -> dict[str, str]:
    return {"reference": f"Patient/{pseudonyms.id(patient_id)}"}


def observation(
    pseudonyms: Pseudonymiser, resource_id: str, patient_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """A received Observation, rebuilt from its whitelisted elements."""
    days = pseudonyms.shift_days(patient_id)
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "id": pseudonyms.id(resource_id),
        "meta": _meta(),
    }
    for key in (*_OBSERVATION_KEEP[:3], *_VALUE_KEEP, *_OBSERVATION_KEEP[3:]):
        if key in body:
            out[key] = _strip_extensions(body[key])
    out["subject"] = _subject(pseudonyms, patient_id)
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in body:
            out[key] = shift_time(body[key], days)
    if isinstance(body.get("effectivePeriod"), dict):
        period = {
            k: shift_time(v, days)
            for k, v in body["effectivePeriod"].items()
            if k in ("start", "end")
        }
        out["effectivePeriod"] = period
    components = []
    for component in body.get("component") or []:
        if isinstance(component, dict) and "code" in component:
            kept = {
                k: _strip_extensions(component[k]) for k in ("code", *_VALUE_KEEP) if k in component
            }
            components.append(kept)
    if components:
        out["component"] = components
    return {k: v for k, v in out.items() if v is not None}


def questionnaire_response(
    pseudonyms: Pseudonymiser, resource_id: str, patient_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """A received QuestionnaireResponse: coded and numeric answers only, no free text."""
    days = pseudonyms.shift_days(patient_id)
    out: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": pseudonyms.id(resource_id),
        "meta": _meta(),
        "status": body.get("status", "completed"),
        "subject": _subject(pseudonyms, patient_id),
    }
    if isinstance(body.get("questionnaire"), str):
        out["questionnaire"] = body["questionnaire"]
    if "authored" in body:
        authored = shift_time(body["authored"], days)
        if authored is not None:
            out["authored"] = authored
    items = _items(body.get("item"), days)
    if items:
        out["item"] = items
    return out


def _items(items: Any, days: int) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = []
    for item in items or []:
        if not isinstance(item, dict) or not isinstance(item.get("linkId"), str):
            continue
        out: dict[str, Any] = {"linkId": item["linkId"]}
        answers = []
        for answer in item.get("answer") or []:
            if not isinstance(answer, dict):
                continue
            value = {k: _strip_extensions(answer[k]) for k in _ANSWER_KEEP if k in answer}
            value |= {
                k: shift_time(answer[k], days)
                for k in _ANSWER_SHIFT
                if k in answer and shift_time(answer[k], days) is not None
            }
            nested = _items(answer.get("item"), days)
            if nested:
                value["item"] = nested
            if value:
                answers.append(value)
        if answers:
            out["answer"] = answers
        nested_items = _items(item.get("item"), days)
        if nested_items:
            out["item"] = nested_items
        if len(out) > 1:
            kept.append(out)
    return kept


def _strip_extensions(value: Any) -> Any:
    """Extensions may carry anything (names, device serials): only the SDC item weight stays."""
    if isinstance(value, dict):
        return {
            k: _strip_extensions(v)
            for k, v in value.items()
            if k not in ("extension", "modifierExtension", "id")
        }
    if isinstance(value, list):
        return [_strip_extensions(v) for v in value]
    return value


def risk_assessment(
    pseudonyms: Pseudonymiser,
    assessment_id: str,
    patient_id: str,
    *,
    as_of: datetime,
    level: str,
    probability: float | None,
    model: str,
    pathway: str,
    pathway_version: int,
    basis: list[tuple[str, str]],
) -> dict[str, Any]:
    """A stored assessment: level, probability, model and pathway version; basis pseudonymised."""
    from service.fhir.outputs import LEVEL_CODES

    qualitative = LEVEL_CODES.get(level, LEVEL_CODES["yellow"])[0]
    prediction: dict[str, Any] = {
        "outcome": {"text": OUTCOME_TEXT},
        "qualitativeRisk": {
            "coding": [{"system": RISK_PROBABILITY, "code": qualitative}],
            "text": level,
        },
    }
    if probability is not None:
        prediction["probabilityDecimal"] = round(float(probability), 6)
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": pseudonyms.id(assessment_id),
        "meta": _meta(),
        "status": "final",
        "subject": _subject(pseudonyms, patient_id),
        "occurrenceDateTime": shift_time(_iso(as_of), pseudonyms.shift_days(patient_id)),
        "method": {
            "coding": [{"system": f"{CODE_SYSTEM}/risk-model", "code": model}],
            "text": f"{model}; pathway {pathway} v{pathway_version}",
        },
        "prediction": [prediction],
    }
    if basis:
        resource["basis"] = [{"reference": f"{rtype}/{pseudonyms.id(rid)}"} for rtype, rid in basis]
    return resource


def outcome(
    pseudonyms: Pseudonymiser,
    outcome_id: str,
    patient_id: str,
    *,
    occurred_at: datetime,
    event_type: str,
) -> dict[str, Any]:
    """A recorded outcome as an Observation: the event type as a code, its time shifted."""
    return {
        "resourceType": "Observation",
        "id": pseudonyms.id(outcome_id),
        "meta": _meta(),
        "status": "final",
        "category": [{"coding": [{"system": OUTCOME_CATEGORY_SYSTEM, "code": "outcome"}]}],
        "code": {
            "coding": [{"system": OUTCOME_CODE_SYSTEM, "code": "deterioration-outcome"}],
            "text": OUTCOME_TEXT,
        },
        "subject": _subject(pseudonyms, patient_id),
        "effectiveDateTime": shift_time(_iso(occurred_at), pseudonyms.shift_days(patient_id)),
        "valueCodeableConcept": {"coding": [{"system": OUTCOME_EVENT_SYSTEM, "code": event_type}]},
    }


def plan_definition(
    pathway_id: str,
    version: int,
    body: dict[str, Any],
    content_hash: str,
    created_at: datetime,
    organisation: str | None,
) -> dict[str, Any]:
    """A pathway version (no personal data; its author is left out) with its rules attached."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    title = body.get("title") or body.get("name") or pathway_id
    if isinstance(title, dict):
        title = title.get("en") or title.get("nb") or pathway_id
    return {
        "resourceType": "PlanDefinition",
        "id": f"{pathway_id}-v{version}"[:64],
        "url": f"{PATHWAY_CANONICAL_BASE}{pathway_id}",
        "identifier": [{"system": f"{CODE_SYSTEM}/pathway-content-hash", "value": content_hash}],
        "version": str(version),
        "name": "".join(ch for ch in pathway_id.title() if ch.isalnum()) or "Pathway",
        "title": str(title),
        "status": "active",
        "date": _iso(created_at),
        "publisher": f"organisation {organisation}" if organisation else "regional template",
        "relatedArtifact": [
            {
                "type": "documentation",
                "label": "pathway document (rule language, governance/rule-language.md)",
                "document": {
                    "contentType": "application/json",
                    "data": base64.b64encode(canonical.encode()).decode(),
                },
            }
        ],
    }


def _iso(moment: datetime) -> str:
    from service.fhir.outputs import _iso as iso

    return iso(moment)


def ndjson(resources: list[dict[str, Any]]) -> str:
    """One JSON object per line, each line ending in a newline (the IG's NDJSON)."""
    return "".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in resources
    )


def suppression_outcome(k: int, groups: int, patients: int, rows: int) -> dict[str, Any]:
    """The OperationOutcome of the manifest's error file when the k-anonymity rule withheld rows.

    It names counts, never the groups: a group's description is itself the small cell.
    """
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "warning",
                "code": "suppressed",
                "diagnostics": (
                    f"k-anonymity (k={k}): {rows} resources of {patients} patients in {groups} "
                    f"groups of (age band, sex, unit, pathway) with fewer than {k} patients "
                    "were withheld from this export"
                ),
            }
        ],
    }


def manifest(
    *,
    transaction_time: datetime,
    request_url: str,
    outputs: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    release: dict[str, Any],
) -> dict[str, Any]:
    """The completion manifest (IG: transactionTime, request, requiresAccessToken, output, error)."""
    return {
        "transactionTime": _iso(transaction_time),
        "request": request_url,
        "requiresAccessToken": True,
        "output": outputs,
        "error": errors,
        "extension": {"https://triage.example.org/fhir/bulk/release": release},
    }
