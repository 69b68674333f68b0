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


def level_source_extension(assessment: Assessment) -> dict[str, Any]:
    return {"url": LEVEL_SOURCE_URL, "valueCode": assessment.level_source}


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


def _meta(patient: Patient, last_updated: datetime) -> dict[str, Any]:
    meta: dict[str, Any] = {"lastUpdated": _iso(last_updated)}
    if patient.confidential_to_guardians:
        # pasient- og brukerrettighetsloven § 3-4: not to be shared with parents/guardians.
        meta["security"] = [{"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}]
    return meta


def _level_codes(level: str) -> tuple[str, str, str]:
    return LEVEL_CODES.get(level, LEVEL_CODES["yellow"])


def risk_assessment(
    assessment: Assessment, patient: Patient, basis_types: dict[str, str] | None = None
) -> dict[str, Any]:
    explanation = assessment.explanation or {}
    qualitative, _, _ = _level_codes(assessment.level)
    top = explanation.get("top_factors", [])
    rationale = "; ".join(f["text_nb"] for f in top) or "Ingen enkeltfaktor skiller seg ut"
    rules = explanation.get("rules", [])
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": assessment.id,
        "extension": [level_source_extension(assessment)],
        "meta": _meta(patient, assessment.created_at),
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
        "extension": [level_source_extension(assessment)],
        "meta": _meta(patient, item.updated_at),
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
        out.append(
            {
                "resourceType": "DetectedIssue",
                "id": f"{assessment.id}-{i}",
                "meta": _meta(patient, assessment.created_at),
                "status": "final",
                "code": {
                    "coding": [
                        {"system": f"{CODE_SYSTEM}/rule", "code": str(rule.get("rule", "rule"))}
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


def searchset(
    resources: list[dict[str, Any]],
    self_url: str,
    total: int | None = None,
    next_url: str | None = None,
) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources) if total is None else total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def capability_statement(base_url: str, software_version: str) -> dict[str, Any]:
    def search(name: str, kind: str, doc: str) -> dict[str, str]:
        return {"name": name, "type": kind, "documentation": doc}

    paging = [
        search("_count", "number", "page size (default 50, max 500)"),
        search("_lastUpdated", "date", "e.g. ge2026-01-01T00:00:00Z"),
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "home-followup-triage", "version": software_version},
        "implementation": {"description": "Triage for digital home follow-up", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "OAuth2 bearer tokens from HelseID (JWT, JWKS-verified)",
                },
                "interaction": [{"code": "batch"}, {"code": "transaction"}],
                "resource": [
                    {
                        "type": "Observation",
                        "interaction": [{"code": "create"}],
                        "conditionalCreate": True,
                        "documentation": "VKP vital signs (LOINC or SNOMED CT, UCUM); identifier is the "
                        "idempotency key",
                    },
                    {
                        "type": "QuestionnaireResponse",
                        "interaction": [{"code": "create"}],
                        "conditionalCreate": True,
                        "documentation": "Helsenorge answers to the pathway questionnaires",
                    },
                    {
                        "type": "RiskAssessment",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [search("subject", "reference", "Patient/{id}"), *paging],
                    },
                    {
                        "type": "Task",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [
                            search("status", "token", "requested|accepted|in-progress|completed"),
                            search("patient", "reference", "Patient/{id}"),
                            *paging,
                        ],
                    },
                    {
                        "type": "DetectedIssue",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [search("patient", "reference", "Patient/{id}"), *paging],
                    },
                ],
            }
        ],
    }
