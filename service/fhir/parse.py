"""FHIR R4 input → canonical readings. Every refusal names the element (FHIRPath) that is wrong.

Accepts the shapes VKP sends (hl7norway VkpObservation and its vital-sign profiles: LOINC and/or
SNOMED CT codings, UCUM valueQuantity, blood pressure as a panel with components) and Helsenorge
QuestionnaireResponses to our pathway questionnaires.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models import questionnaires
from models.identifiers import DNR_SYSTEM, FNR_SYSTEM, IdentifierError, require_ascii_digits
from models.measurements import (
    CONSCIOUSNESS,
    MEASUREMENTS,
    ON_OXYGEN,
    SYMPTOM_SCORE,
    UCUM,
    is_blood_pressure_panel,
    measurement_for_code,
)
from service.errors import InvalidInput

ACCEPTED_OBSERVATION_STATUS = {"final", "amended", "corrected", "preliminary"}
ACCEPTED_QR_STATUS = {"completed", "amended"}
# A device clock a few minutes ahead of ours is not "the future".
FUTURE_TOLERANCE_S = 300


@dataclass
class SubjectRef:
    patient_id: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None


@dataclass
class ParsedResource:
    resource_type: str
    idempotency_key: str
    content_hash: str
    subject: SubjectRef
    effective_s: int
    readings: list[tuple[str, float]] = field(default_factory=list)  # (canonical name, value)
    body: dict[str, Any] = field(default_factory=dict)


def content_hash(resource: dict[str, Any]) -> str:
    canonical = json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _require(cond: bool, message: str, location: str) -> None:
    if not cond:
        raise InvalidInput(message, location=location)


def _parse_time(value: Any, location: str, now_s: float) -> int:
    _require(isinstance(value, str) and len(value) >= 10, "a dateTime is required", location)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"'{value}' is not a FHIR dateTime", location=location) from exc
    if parsed.tzinfo is None:
        # FHIR requires a zone when time is given; a bare date is taken as UTC midnight.
        _require(len(str(value)) == 10, "dateTime with a time must carry a time zone", location)
        parsed = parsed.replace(tzinfo=UTC)
    seconds = int(parsed.timestamp())
    _require(seconds <= now_s + FUTURE_TOLERANCE_S, "effective time is in the future", location)
    return seconds


def _subject(resource: dict[str, Any], rtype: str) -> SubjectRef:
    subject = resource.get("subject")
    loc = f"{rtype}.subject"
    if not isinstance(subject, dict):
        raise InvalidInput("subject is required", location=loc)
    ref = subject.get("reference")
    if isinstance(ref, str) and ref:
        _require(
            ref.startswith("Patient/") and len(ref) > 8,
            "subject.reference must be Patient/<id>",
            f"{loc}.reference",
        )
        return SubjectRef(patient_id=ref.removeprefix("Patient/"))
    ident = subject.get("identifier")
    if not isinstance(ident, dict):
        raise InvalidInput("subject needs a reference or an identifier", location=loc)
    system, value = ident.get("system"), ident.get("value")
    _require(
        system in (FNR_SYSTEM, DNR_SYSTEM),
        "subject.identifier.system must be the fødselsnummer or D-number OID",
        f"{loc}.identifier.system",
    )
    try:
        require_ascii_digits(value if isinstance(value, str) else "", "subject.identifier.value")
    except IdentifierError as exc:
        raise InvalidInput(str(exc), location=f"{loc}.identifier.value") from exc
    return SubjectRef(identifier_system=system, identifier_value=value)


def _idempotency_key(resource: dict[str, Any], rtype: str, digest: str) -> str:
    identifiers = resource.get("identifier")
    if isinstance(identifiers, dict):  # QuestionnaireResponse.identifier is a single Identifier
        identifiers = [identifiers]
    if identifiers is not None:
        _require(isinstance(identifiers, list), "identifier must be a list", f"{rtype}.identifier")
        for i, ident in enumerate(identifiers):
            _require(
                isinstance(ident, dict), "identifier must be an object", f"{rtype}.identifier[{i}]"
            )
            if ident.get("value"):
                return f"{rtype}|{ident.get('system', '')}|{ident['value']}"[:300]
    if isinstance(resource.get("id"), str) and resource["id"]:
        return f"{rtype}|id|{resource['id']}"[:300]
    # No identifier and no id: the content itself identifies a retry of the same message.
    return f"{rtype}|sha256|{digest}"


def _codings(node: Any, location: str) -> list[tuple[str, str]]:
    _require(isinstance(node, dict), "a CodeableConcept is required", location)
    codings = node.get("coding")
    if not isinstance(codings, list) or not codings:
        raise InvalidInput("coding is required", location=f"{location}.coding")
    out = []
    for i, c in enumerate(codings):
        _require(isinstance(c, dict), "coding must be an object", f"{location}.coding[{i}]")
        if isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
            out.append((c["system"], c["code"]))
    return out


def _quantity(node: Any, name: str, location: str) -> float:
    _require(isinstance(node, dict), "valueQuantity is required", location)
    value = node.get("value")
    _require(
        isinstance(value, int | float) and not isinstance(value, bool),
        "valueQuantity.value must be a number",
        f"{location}.value",
    )
    system = node.get("system")
    _require(
        system in (None, UCUM),
        "units must be UCUM (http://unitsofmeasure.org)",
        f"{location}.system",
    )
    unit = node.get("code") or node.get("unit")
    _require(
        isinstance(unit, str) and unit != "",
        "valueQuantity.code (UCUM unit) is required",
        f"{location}.code",
    )
    measurement = MEASUREMENTS[name]
    try:
        canonical = measurement.to_canonical(float(value), str(unit))
    except ValueError as exc:
        raise InvalidInput(str(exc), location=f"{location}.code") from exc
    _require(
        measurement.is_plausible(canonical),
        f"{measurement.label_en} {canonical:g} {measurement.unit} is outside the plausible "
        f"range {measurement.plausible_min:g}–{measurement.plausible_max:g}",
        f"{location}.value",
    )
    return canonical


def _known_measurement(codings: list[tuple[str, str]]) -> str | None:
    for system, code in codings:
        name = measurement_for_code(system, code)
        if name:
            return name
    return None


def parse_observation(resource: dict[str, Any], now_s: float) -> ParsedResource:
    rtype = "Observation"
    _require(
        resource.get("resourceType") == rtype, "resourceType must be Observation", "resourceType"
    )
    status = resource.get("status")
    _require(
        status in ACCEPTED_OBSERVATION_STATUS,
        f"status must be one of {sorted(ACCEPTED_OBSERVATION_STATUS)}",
        f"{rtype}.status",
    )
    codings = _codings(resource.get("code"), f"{rtype}.code")
    effective = (
        resource.get("effectiveDateTime")
        or resource.get("effectiveInstant")
        or (
            (resource.get("effectivePeriod") or {}).get("start")
            if isinstance(resource.get("effectivePeriod"), dict)
            else None
        )
    )
    effective_s = _parse_time(effective, f"{rtype}.effectiveDateTime", now_s)
    subject = _subject(resource, rtype)
    readings: list[tuple[str, float]] = []
    if any(is_blood_pressure_panel(s, c) for s, c in codings):
        components = resource.get("component")
        if not isinstance(components, list) or not components:
            raise InvalidInput(
                "a blood-pressure panel needs its components", location=f"{rtype}.component"
            )
        for i, comp in enumerate(components):
            loc = f"{rtype}.component[{i}]"
            _require(isinstance(comp, dict), "component must be an object", loc)
            name = _known_measurement(_codings(comp.get("code"), f"{loc}.code"))
            _require(
                name in ("systolic_bp", "diastolic_bp"),
                "blood-pressure components must be 8480-6 (systolic) or 8462-4 (diastolic)",
                f"{loc}.code",
            )
            assert name is not None
            readings.append(
                (name, _quantity(comp.get("valueQuantity"), name, f"{loc}.valueQuantity"))
            )
        names = [r[0] for r in readings]
        _require(len(set(names)) == len(names), "a component is repeated", f"{rtype}.component")
    else:
        name = _known_measurement(codings)
        _require(
            name is not None,
            "code is not a supported measurement (LOINC or SNOMED CT; see CapabilityStatement)",
            f"{rtype}.code.coding",
        )
        assert name is not None
        readings.append(
            (name, _quantity(resource.get("valueQuantity"), name, f"{rtype}.valueQuantity"))
        )
    digest = content_hash(resource)
    return ParsedResource(
        rtype,
        _idempotency_key(resource, rtype, digest),
        digest,
        subject,
        effective_s,
        readings,
        resource,
    )


def parse_questionnaire_response(resource: dict[str, Any], now_s: float) -> ParsedResource:
    rtype = "QuestionnaireResponse"
    _require(
        resource.get("resourceType") == rtype,
        "resourceType must be QuestionnaireResponse",
        "resourceType",
    )
    _require(
        resource.get("status") in ACCEPTED_QR_STATUS,
        f"status must be one of {sorted(ACCEPTED_QR_STATUS)}",
        f"{rtype}.status",
    )
    url = resource.get("questionnaire")
    _require(
        isinstance(url, str) and url != "",
        "questionnaire (canonical URL) is required",
        f"{rtype}.questionnaire",
    )
    questionnaire = questionnaires.questionnaire_by_url(str(url))
    _require(
        questionnaire is not None,
        "questionnaire is not one of our pathway questionnaires",
        f"{rtype}.questionnaire",
    )
    assert questionnaire is not None
    _require(
        isinstance(resource.get("item"), list) and resource["item"],
        "item (the answers) is required",
        f"{rtype}.item",
    )
    effective_s = _parse_time(resource.get("authored"), f"{rtype}.authored", now_s)
    subject = _subject(resource, rtype)
    try:
        answers = questionnaires.answers_from_response(resource)
        score = questionnaires.score_answers(questionnaire, answers)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidInput(str(exc), location=f"{rtype}.item") from exc
    qid = str(questionnaire.get("id", "questionnaire"))
    readings: list[tuple[str, float]] = []
    if score.symptom_score == score.symptom_score:  # NaN when no scored item was answered
        readings.append((SYMPTOM_SCORE, float(score.symptom_score)))
    readings += [(f"q:{qid}:{link}", float(p)) for link, p in sorted(score.item_points.items())]
    if ON_OXYGEN in score.values:
        readings.append((ON_OXYGEN, 1.0 if score.values[ON_OXYGEN] else 0.0))
    if CONSCIOUSNESS in score.values:
        readings.append((CONSCIOUSNESS, 0.0 if score.values[CONSCIOUSNESS] == "alert" else 1.0))
    digest = content_hash(resource)
    return ParsedResource(
        rtype,
        _idempotency_key(resource, rtype, digest),
        digest,
        subject,
        effective_s,
        readings,
        resource,
    )


PARSERS = {"Observation": parse_observation, "QuestionnaireResponse": parse_questionnaire_response}
