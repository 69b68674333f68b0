"""FHIR R4 resources the service emits for DIPS: RiskAssessment, Task, DetectedIssue, Bundle,
CapabilityStatement. Tests validate every one with fhir.resources."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from service.db.tables import Assessment, Patient, WorklistItem

CODE_SYSTEM = "https://triage.example.org/fhir/CodeSystem"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
OUTCOME_TEXT = "Deterioration needing hospital contact within 72 hours"
LEVEL_SOURCE_URL = f"{CODE_SYSTEM}/StructureDefinition/level-source"
# Where a level came from (the combining policy: rules are hard limits, the model warns early).
LEVEL_SOURCE_TEXT_NB = {
    "rule": "Nivå satt av regel",
    "model": "Nivå satt av modellen",
    "rule+model": "Nivå satt av regel og modell",
    "none": "Ingen regel eller modell hevet nivået",
}


def level_source_extension(source: str) -> dict[str, Any]:
    return {"url": LEVEL_SOURCE_URL, "valueCode": source}


# The profiles each output declares in meta.profile, and meets (tests validate against FHIR R4).
# DetectedIssue follows VKP's VkpDetectedIssue (HL7Norway/Velferdsteknologi, VKP-R4,
# vkp-DetectedIssue-v090: code required, preferred binding to the VKP alert codes). For Task,
# RiskAssessment and Patient no Norwegian profile applies to what we send, so they declare the
# FHIR R4 core profile they meet.
PROFILES = {
    "DetectedIssue": "http://ehelse.no/fhir/StructureDefinition/vkp-DetectedIssue-v090",
    "Task": "http://hl7.org/fhir/StructureDefinition/Task",
    "RiskAssessment": "http://hl7.org/fhir/StructureDefinition/RiskAssessment",
    "Patient": "http://hl7.org/fhir/StructureDefinition/Patient",
}
VKP_ALERT_CODES = "http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090"
# Our rule types (models/rules/schema.py RULE_TYPES) -> VKP alert code and its display.
# A threshold on reported measurements is "1.1 Måledata rapportert", on questionnaire answers
# "1.2 Skjemabesvarelse"; a missed reading "2.2 Måling ikke rapportert" (a missed questionnaire
# "2.1"); an aggregate of several rules or a score (NEWS2) "0 Oppsummerende varsel".
VKP_ALERT_DISPLAY = {
    "0": "Oppsummerende varsel",
    "1.1": "Måledata rapportert",
    "1.2": "Skjemabesvarelse",
    "2.1": "Manglende skjemabesvarelse",
    "2.2": "Måling ikke rapportert",
}
RULE_TYPE_TO_VKP_ALERT = {
    "bands": "1.1",
    "category": "1.1",
    "baseline_deviation": "1.1",
    "change": "1.1",
    "consecutive": "1.1",
    "questionnaire": "1.2",
    "missed": "2.2",
    "combination": "0",
    "score": "0",
}


def vkp_alert_code(rule: dict[str, Any]) -> str:
    """The VKP alert code for a fired rule (see RULE_TYPE_TO_VKP_ALERT)."""
    code = RULE_TYPE_TO_VKP_ALERT.get(str(rule.get("type", "")), "0")
    if code == "2.2":
        measured = str((rule.get("values") or {}).get("measurement", ""))
        if measured.startswith("q/") or measured == "symptom_score":
            code = "2.1"
    return code


# Triage level -> (RiskAssessment qualitativeRisk, Task priority, DetectedIssue severity).
LEVEL_CODES: dict[str, tuple[str, str, str]] = {
    "red": ("high", "asap", "high"),
    "yellow": ("moderate", "urgent", "moderate"),
    "green": ("low", "routine", "low"),
}
# Worklist state -> Task.status.
TASK_STATUS = {
    "open": "requested",
    "acknowledged": "accepted",
    "escalated": "in-progress",
    "resolved": "completed",
}
STATUS_TO_STATE = {v: k for k, v in TASK_STATUS.items()}


def _iso(dt: datetime) -> str:
    aware = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return aware.isoformat()


def _meta(
    patient: Patient, last_updated: datetime, version: int = 1, profiles: tuple[str, ...] = ()
) -> dict[str, Any]:
    # Set by this server: record entries are immutable (version 1); a Task counts its updates.
    meta: dict[str, Any] = {"versionId": str(version), "lastUpdated": _iso(last_updated)}
    if profiles:
        meta["profile"] = list(profiles)
    if patient.confidential_to_guardians:
        # pasient- og brukerrettighetsloven § 3-4: not to be shared with parents/guardians.
        meta["security"] = [{"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}]
    return meta


def stored_resource(
    body: dict[str, Any], resource_id: str, version_id: int, last_updated: datetime | None
) -> dict[str, Any]:
    """A received resource as this server holds it: its id and meta are the server's."""
    resource = {k: v for k, v in body.items() if k not in ("id", "meta")}
    meta: dict[str, Any] = {
        "versionId": str(version_id),
        "lastUpdated": _iso(last_updated or datetime.now(UTC)),
    }
    profiles = (
        (body.get("meta") or {}).get("profile") if isinstance(body.get("meta"), dict) else None
    )
    if isinstance(profiles, list) and profiles:
        meta["profile"] = profiles  # what the sender claims to meet; kept as received
    return {"resourceType": body.get("resourceType"), "id": resource_id, "meta": meta, **resource}


def http_date(iso: str) -> str:
    """An RFC 7231 date for Last-Modified from an ISO 8601 instant."""
    from email.utils import format_datetime

    moment = datetime.fromisoformat(iso)
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _level_codes(level: str) -> tuple[str, str, str]:
    return LEVEL_CODES.get(level, LEVEL_CODES["yellow"])


def risk_assessment(
    assessment: Assessment,
    patient: Patient,
    basis_types: dict[str, str] | None = None,
    superseded_by: str | None = None,
) -> dict[str, Any]:
    explanation = assessment.explanation or {}
    qualitative, _, _ = _level_codes(assessment.level)
    top = explanation.get("top_factors", [])
    rationale = "; ".join(f["text_nb"] for f in top) or "Ingen enkeltfaktor skiller seg ut"
    rules = explanation.get("rules", [])
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": assessment.id,
        "extension": [level_source_extension(assessment.level_source)],
        "meta": _meta(patient, assessment.created_at, profiles=(PROFILES["RiskAssessment"],)),
        "status": "final",
        "subject": {"reference": f"Patient/{patient.id}"},
        "occurrenceDateTime": _iso(assessment.as_of),
        "method": {
            "coding": [
                {
                    "system": f"{CODE_SYSTEM}/risk-model",
                    "code": assessment.model_name or "rules-only",
                    "display": f"{assessment.model_name} {assessment.model_version}",
                }
            ],
            "text": f"{assessment.model_name} {assessment.model_version}; pathway "
            f"{assessment.pathway_id} v{assessment.pathway_version}",
        },
        "basis": [
            {"reference": f"{(basis_types or {}).get(r, 'Observation')}/{r}"}
            for r in assessment.basis
        ],
        "prediction": [
            {
                "outcome": {"text": OUTCOME_TEXT},
                "qualitativeRisk": {
                    "coding": [{"system": RISK_PROBABILITY, "code": qualitative}],
                    "text": assessment.level,
                },
                "whenRange": {
                    "high": {
                        "value": 72,
                        "unit": "h",
                        "system": "http://unitsofmeasure.org",
                        "code": "h",
                    }
                },
                "rationale": rationale,
            }
        ],
        "note": [
            {"text": LEVEL_SOURCE_TEXT_NB.get(assessment.level_source, "")},
            {"text": "Faktorer: " + rationale},
        ],
    }
    if assessment.probability is not None:
        resource["prediction"][0]["probabilityDecimal"] = round(float(assessment.probability), 6)
    if assessment.supersedes_id:
        resource["note"].append(
            {"text": f"Erstatter RiskAssessment/{assessment.supersedes_id} (korrigerte data)"}
        )
    if superseded_by:
        # Kept on record, never deleted; the later assessment replaced it.
        resource["meta"]["tag"] = [
            {"system": f"{CODE_SYSTEM}/assessment-state", "code": "superseded"}
        ]
        resource["note"].append({"text": f"Erstattet av RiskAssessment/{superseded_by}"})
    if rules:
        resource["note"].append(
            {
                "text": "Regler utløst: "
                + "; ".join(r.get("text_nb", r.get("rule", "")) for r in rules)
            }
        )
    return resource


def task(item: WorklistItem, patient: Patient, assessment: Assessment) -> dict[str, Any]:
    _, priority, _ = _level_codes(item.level)
    explanation = assessment.explanation or {}
    top = explanation.get("top_factors", [])
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": item.id,
        "extension": [level_source_extension(item.level_source_with(assessment))],
        "meta": _meta(patient, item.updated_at, int(item.version or 1), (PROFILES["Task"],)),
        "identifier": [{"system": f"{CODE_SYSTEM}/worklist-item", "value": item.id}],
        "status": TASK_STATUS[item.state],
        "businessStatus": {"text": item.state},
        "intent": "plan",
        "priority": priority,
        "code": {
            "coding": [
                {
                    "system": f"{CODE_SYSTEM}/task-type",
                    "code": "review-home-monitoring",
                    "display": "Vurder pasient i digital heimeoppfølging",
                }
            ]
        },
        "description": f"{item.level.upper()}: "
        + ("; ".join(f["text_nb"] for f in top[:3]) or "ny vurdering"),
        "focus": {"reference": f"RiskAssessment/{assessment.id}"},
        "for": {"reference": f"Patient/{patient.id}"},
        "authoredOn": _iso(item.opened_at),
        "lastModified": _iso(item.updated_at),
        "owner": {
            "identifier": {"system": f"{CODE_SYSTEM}/unit", "value": item.unit},
            "display": item.unit,
        },
    }
    return resource


def detected_issues(assessment: Assessment, patient: Patient) -> list[dict[str, Any]]:
    """One DetectedIssue per fired threshold rule, as the VKP home follow-up guide models alerts."""
    out = []
    for i, rule in enumerate((assessment.explanation or {}).get("rules", [])):
        _, _, severity = _level_codes(str(rule.get("level", "yellow")))
        alert = vkp_alert_code(rule)
        out.append(
            {
                "resourceType": "DetectedIssue",
                "id": f"{assessment.id}-{i}",
                "meta": _meta(
                    patient, assessment.created_at, profiles=(PROFILES["DetectedIssue"],)
                ),
                "status": "final",
                "code": {
                    "coding": [
                        {
                            "system": VKP_ALERT_CODES,
                            "code": alert,
                            "display": VKP_ALERT_DISPLAY[alert],
                        },
                        # Which of the pathway's rules fired, for systems that know our rules.
                        {"system": f"{CODE_SYSTEM}/rule", "code": str(rule.get("rule", "rule"))},
                    ],
                    "text": str(rule.get("text_nb", rule.get("rule", ""))),
                },
                "severity": severity,
                "patient": {"reference": f"Patient/{patient.id}"},
                "identifiedDateTime": _iso(assessment.as_of),
                "detail": str(rule.get("text_en", "")) or None,
                "implicated": [{"reference": f"RiskAssessment/{assessment.id}"}],
            }
        )
        if out[-1]["detail"] is None:
            del out[-1]["detail"]
    return out


def patient(row: Patient) -> dict[str, Any]:
    """A minimal Patient: what a reference to it must resolve to, and nothing more."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": row.id,
        "meta": _meta(row, row.created_at, profiles=(PROFILES["Patient"],)),
        "identifier": [{"system": row.identifier_system, "value": row.identifier_value}],
        "birthDate": (
            row.birth_date.isoformat()
            if hasattr(row.birth_date, "isoformat")
            else str(row.birth_date)
        )[:10],
        "managingOrganization": {
            "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": row.organisation}
        },
    }
    if row.sex in ("female", "male", "other", "unknown"):
        resource["gender"] = row.sex
    return resource
