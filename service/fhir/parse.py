"""FHIR R4 input → canonical readings. Every refusal names the element (FHIRPath) that is wrong.

Accepts the shapes VKP sends (hl7norway VkpObservation and its vital-sign profiles: LOINC and/or
SNOMED CT codings, UCUM valueQuantity, blood pressure as a panel with components) and Helsenorge
QuestionnaireResponses to our pathway questionnaires.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models import questionnaires
from models.identifiers import PERSON_SYSTEMS, IdentifierError, require_ascii_digits
from models.measurements import (
    ACVPU_OBSERVABLES,
    BLOOD_PRESSURE_EXTRA_COMPONENTS,
    BLOOD_PRESSURE_EXTRA_PLAUSIBLE,
    CONSCIOUSNESS,
    MEASUREMENTS,
    ON_OXYGEN,
    SNOMED,
    SYMPTOM_SCORE,
    UCUM,
    consciousness_category,
    is_blood_pressure_panel,
    measurement_for_code,
)
from service.errors import InvalidInput

ACCEPTED_OBSERVATION_STATUS = {"final", "amended", "corrected", "preliminary", "entered-in-error"}
ACCEPTED_QR_STATUS = {"completed", "amended", "entered-in-error"}
# A resend with one of these statuses replaces the stored resource as its next version.
REPLACING_STATUS = {"amended", "corrected"}
WITHDRAWN_STATUS = "entered-in-error"
# Elements that do not change what was observed: the sender's metadata and the narrative.
NON_CLINICAL_ELEMENTS = ("meta", "text")
# A device clock a few minutes ahead of ours is not "the future".
FUTURE_TOLERANCE_S = 300
# No home-monitoring reading is older than this. Times such as 0001-01-01, 1900-01-01 or
# 1970-01-01 are device clocks reset to their default, and would be stored as real history. A
# fixed bound, not the patient's birth date: parsing happens before the patient is known, and
# every device that speaks FHIR was made long after it.
EARLIEST_EFFECTIVE = datetime(2000, 1, 1, tzinfo=UTC)
# FHIR R4 dateTime (hl7.org/fhir/R4/datatypes.html#dateTime), anchored by fullmatch.
FHIR_DATETIME = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
    r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
    r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?",
    re.ASCII,
)


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
    status: str = "final"

    @property
    def withdrawn(self) -> bool:
        return self.status == WITHDRAWN_STATUS

    @property
    def replaces(self) -> bool:
        return self.status in REPLACING_STATUS or self.withdrawn


def clinical_content(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without meta and narrative: a resend differing only there is the same."""
    return {k: v for k, v in resource.items() if k not in NON_CLINICAL_ELEMENTS}


def _canonical_numbers(node: Any) -> Any:
    """91.0 and 91 are the same FHIR decimal value: hash them alike, so a retry is a retry."""
    if isinstance(node, float) and node.is_integer():
        return int(node)
    if isinstance(node, dict):
        return {k: _canonical_numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_canonical_numbers(v) for v in node]
    return node


def content_hash(resource: dict[str, Any]) -> str:
    # Hashes stored before numbers were canonicalised differ only for integral floats (91.0);
    # a retry of such a message sent before the change answers 409 once, then never again.
    canonical = json.dumps(
        _canonical_numbers(resource), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _require(cond: bool, message: str, location: str) -> None:
    if not cond:
        raise InvalidInput(message, location=location)


def _parse_time(value: Any, location: str, now_s: float) -> int:
    _require(isinstance(value, str) and len(value) >= 10, "a dateTime is required", location)
    # Python's fromisoformat also reads the basic form (20261203T110000Z) and a space for the T;
    # FHIR does not, and a sender that writes them has a bug we should not hide.
    _require(
        FHIR_DATETIME.fullmatch(str(value)) is not None,
        f"'{value}' is not a FHIR dateTime (YYYY-MM-DDThh:mm:ss+zz:zz)",
        location,
    )
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
    _require(
        parsed >= EARLIEST_EFFECTIVE,
        f"effective time is before {EARLIEST_EFFECTIVE:%Y-%m-%d}: a device clock that was reset",
        location,
    )
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
        system in PERSON_SYSTEMS,
        "subject.identifier.system must be the fødselsnummer, D-number or felles hjelpenummer OID",
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


def _ratio_percent(node: Any, location: str) -> float:
    """A valueRatio (DIPS sends SpO2 as 24/25) as a percentage."""
    numerator, denominator = node.get("numerator"), node.get("denominator")
    _require(
        isinstance(numerator, dict), "valueRatio.numerator is required", f"{location}.numerator"
    )
    _require(
        isinstance(denominator, dict),
        "valueRatio.denominator is required",
        f"{location}.denominator",
    )
    top, bottom = numerator.get("value"), denominator.get("value")
    for v, where in ((top, "numerator"), (bottom, "denominator")):
        _require(
            isinstance(v, int | float) and not isinstance(v, bool),
            f"valueRatio.{where}.value must be a number",
            f"{location}.{where}.value",
        )
    _require(bottom != 0, "valueRatio.denominator.value must not be 0", f"{location}.denominator")
    return 100.0 * float(top) / float(bottom)


def _value(resource: dict[str, Any], name: str, location: str) -> float:
    """valueQuantity, or valueRatio where the canonical unit is a percentage."""
    if "valueQuantity" not in resource and isinstance(resource.get("valueRatio"), dict):
        _require(
            MEASUREMENTS[name].unit == "%",
            "valueRatio is accepted only for percentages; send valueQuantity",
            f"{location}.valueRatio",
        )
        value = _ratio_percent(resource["valueRatio"], f"{location}.valueRatio")
        return _plausible(name, value, f"{location}.valueRatio")
    return _quantity(resource.get("valueQuantity"), name, f"{location}.valueQuantity")


def _plausible(name: str, canonical: float, location: str) -> float:
    measurement = MEASUREMENTS[name]
    _require(
        measurement.is_plausible(canonical),
        f"{measurement.label_en} {canonical:g} {measurement.unit} is outside the plausible "
        f"range {measurement.plausible_min:g}–{measurement.plausible_max:g}",
        location,
    )
    return canonical


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
    return _plausible(name, canonical, f"{location}.value")


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
            comp_codings = _codings(comp.get("code"), f"{loc}.code")
            name = _known_measurement(comp_codings)
            if name in ("systolic_bp", "diastolic_bp"):
                assert name is not None
                readings.append(
                    (name, _quantity(comp.get("valueQuantity"), name, f"{loc}.valueQuantity"))
                )
                continue
            extra = next(
                (
                    BLOOD_PRESSURE_EXTRA_COMPONENTS[c]
                    for c in comp_codings
                    if c in BLOOD_PRESSURE_EXTRA_COMPONENTS
                ),
                None,
            )
            # The profiles slice component openly: a component we do not know stays in the
            # stored resource and is not read.
            if extra is not None and isinstance(comp.get("valueQuantity"), dict):
                readings.append((extra, _pressure(comp["valueQuantity"], f"{loc}.valueQuantity")))
        _require(
            any(r[0] in ("systolic_bp", "diastolic_bp") for r in readings),
            "a blood-pressure panel needs a systolic (8480-6) or diastolic (8462-4) component",
            f"{rtype}.component",
        )
        names = [r[0] for r in readings]
        _require(len(set(names)) == len(names), "a component is repeated", f"{rtype}.component")
    elif any(system == SNOMED and code in ACVPU_OBSERVABLES for system, code in codings):
        readings.append((CONSCIOUSNESS, _acvpu_value(resource, rtype)))
    else:
        name = _known_measurement(codings)
        _require(
            name is not None,
            "code is not a supported measurement (LOINC or SNOMED CT; see CapabilityStatement)",
            f"{rtype}.code.coding",
        )
        assert name is not None
        readings.append((name, _value(resource, name, rtype)))
    digest = content_hash(clinical_content(resource))
    return ParsedResource(
        rtype,
        _idempotency_key(resource, rtype, digest),
        digest,
        subject,
        effective_s,
        readings,
        resource,
        str(status),
    )


def _acvpu_value(resource: dict[str, Any], rtype: str) -> float:
    """0 for Alert, 1 for new Confusion, Voice, Pain or Unresponsive (NEWS2 scores 3)."""
    node = resource.get("valueCodeableConcept")
    terms: list[str] = []
    location = f"{rtype}.valueCodeableConcept"
    if isinstance(node, dict):
        terms += [
            str(c.get("code"))
            for c in node.get("coding") or []
            if isinstance(c, dict) and c.get("code")
        ]
        if isinstance(node.get("text"), str):
            terms.append(node["text"])
    elif isinstance(resource.get("valueString"), str):
        terms.append(resource["valueString"])
        location = f"{rtype}.valueString"
    for term in terms:
        try:
            return 0.0 if consciousness_category(term) == "alert" else 1.0
        except ValueError:
            continue
    raise InvalidInput(
        "the ACVPU level must be alert, confusion, voice, pain or unresponsive (a term or its "
        "SNOMED CT code)",
        location=location,
    )


def _pressure(node: dict[str, Any], location: str) -> float:
    """An extra blood-pressure component (MAP, pulse pressure) in mm[Hg]."""
    value = node.get("value")
    _require(
        isinstance(value, int | float) and not isinstance(value, bool),
        "valueQuantity.value must be a number",
        f"{location}.value",
    )
    assert isinstance(value, int | float)
    unit = node.get("code") or node.get("unit")
    try:
        mmhg = MEASUREMENTS["systolic_bp"].to_canonical(float(value), str(unit))
    except ValueError as exc:
        raise InvalidInput(str(exc), location=f"{location}.code") from exc
    low, high = BLOOD_PRESSURE_EXTRA_PLAUSIBLE
    _require(low <= mmhg <= high, f"{mmhg:g} mm[Hg] is not plausible", f"{location}.value")
    return mmhg


def parse_questionnaire_response(resource: dict[str, Any], now_s: float) -> ParsedResource:
    rtype = "QuestionnaireResponse"
    _require(
        resource.get("resourceType") == rtype,
        "resourceType must be QuestionnaireResponse",
        "resourceType",
    )
    status = resource.get("status")
    _require(
        status in ACCEPTED_QR_STATUS,
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
    digest = content_hash(clinical_content(resource))
    return ParsedResource(
        rtype,
        _idempotency_key(resource, rtype, digest),
        digest,
        subject,
        effective_s,
        readings,
        resource,
        str(status),
    )


PARSERS = {"Observation": parse_observation, "QuestionnaireResponse": parse_questionnaire_response}
