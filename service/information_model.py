"""docs/information-model.md, generated from the code's own definitions so that it cannot drift.

Measurements, units and codes come from models/measurements.py, the feature vector from
models/features.py, questionnaires from models/questionnaires/*.json, and the elements of every
resource the service writes from rendering its real builders (service/fhir/outputs.py,
service/fhir/bulk.py) on a sample. Only the elements read from received resources are listed by
hand (READ_ELEMENTS, kept next to service/fhir/parse.py's rules). A test regenerates the file and
fails when the committed copy differs:

    python -m service.information_model          # rewrite docs/information-model.md
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "information-model.md"

# Elements the service reads from what senders post (service/fhir/parse.py).
READ_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Observation": (
        "identifier (idempotency key)",
        "status",
        "category",
        "code.coding (LOINC or SNOMED CT)",
        "subject (reference or fødselsnummer/D-number identifier)",
        "effectiveDateTime | effectivePeriod | effectiveInstant",
        "valueQuantity (value, UCUM code)",
        "valueCodeableConcept (ACVPU, on oxygen)",
        "component (blood pressure panel: systolic, diastolic)",
        "meta.profile (VKP)",
    ),
    "QuestionnaireResponse": (
        "identifier (idempotency key)",
        "questionnaire (canonical URL)",
        "status",
        "subject",
        "authored",
        "item.linkId",
        "item.answer.valueCoding | valueBoolean | valueInteger | valueDecimal",
    ),
    "Bundle": ("type (batch | transaction)", "entry.resource", "entry.request"),
}


def _paths(value: Any, prefix: str) -> Iterator[str]:
    """Every element path of a JSON resource, arrays flattened (FHIRPath-like)."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "resourceType":
                continue
            path = f"{prefix}.{key}"
            yield path
            yield from _paths(child, path)
    elif isinstance(value, list):
        for child in value:
            yield from _paths(child, prefix)


def _systems(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "system" and isinstance(child, str):
                yield child
            else:
                yield from _systems(child)
    elif isinstance(value, list):
        for child in value:
            yield from _systems(child)


def sample_outputs() -> list[tuple[str, dict[str, Any]]]:
    """(where, resource) for every resource type the service writes, from its real builders."""
    from service.db.tables import Assessment, Patient, WorklistItem
    from service.fhir import bulk, outputs

    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    patient = Patient(
        id="p",
        identifier_system="urn:oid:2.16.578.1.12.4.1.4.1",
        identifier_value="00000000000",
        birth_date=date(1950, 1, 1),
        sex="female",
        pathway_id="copd",
        organisation="0",
        unit="u",
        confidential_to_guardians=True,
        created_at=at,
        created_by="x",
    )
    assessment = Assessment(
        id="a",
        patient_id="p",
        created_at=at,
        as_of=at,
        trigger="ingestion",
        model_name="m",
        model_version="1",
        pathway_id="copd",
        pathway_version=1,
        rule_set_hash="h",
        features=[],
        probability=0.5,
        level="red",
        explanation={
            "top_factors": [{"text_nb": "x"}],
            "rules": [{"rule": "r", "level": "red", "text_nb": "x", "text_en": "x"}],
        },
        basis=["o"],
        organisation="0",
        supersedes_id="b",
    )
    item = WorklistItem(
        id="i", level="red", state="open", unit="u", opened_at=at, updated_at=at, version=1
    )
    pseudonyms = bulk.Pseudonymiser("s", "r", 10)
    observation = {
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2708-6"}]},
        "valueQuantity": {
            "value": 95,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
        "effectiveDateTime": "2026-01-01T12:00:00Z",
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120},
            }
        ],
    }
    answer = {
        "status": "completed",
        "questionnaire": "https://triage.example.org/fhir/Questionnaire/copd-symptoms",
        "authored": "2026-01-01T12:00:00Z",
        "item": [{"linkId": "dyspnoea", "answer": [{"valueCoding": {"system": "s", "code": "c"}}]}],
    }
    return [
        (
            "service/fhir/outputs.py",
            outputs.risk_assessment(assessment, patient, superseded_by="c"),
        ),
        ("service/fhir/outputs.py", outputs.task(item, patient, assessment)),
        ("service/fhir/outputs.py", outputs.detected_issues(assessment, patient)[0]),
        ("service/fhir/outputs.py", outputs.patient(patient)),
        (
            "service/fhir/bulk.py",
            bulk.patient(pseudonyms, "p", date(1950, 1, 1), "female", "copd", "u", at.date()),
        ),
        ("service/fhir/bulk.py", bulk.observation(pseudonyms, "o", "p", observation)),
        (
            "service/fhir/bulk.py",
            bulk.outcome(pseudonyms, "x", "p", occurred_at=at, event_type="none"),
        ),
        ("service/fhir/bulk.py", bulk.questionnaire_response(pseudonyms, "q", "p", answer)),
        (
            "service/fhir/bulk.py",
            bulk.risk_assessment(
                pseudonyms,
                "a",
                "p",
                as_of=at,
                level="red",
                probability=0.5,
                model="m 1",
                pathway="copd",
                pathway_version=1,
                basis=[("Observation", "o")],
            ),
        ),
        ("service/fhir/bulk.py", bulk.plan_definition("copd", 1, {}, "sha256:0", at, None)),
    ]


def render() -> str:
    from models.features import AGE_BAND_LABELS, FEATURES
    from models.identifiers import DNR_SYSTEM, FHN_SYSTEM, FNR_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM
    from models.measurements import (
        ACVPU_SNOMED,
        BLOOD_PRESSURE_PANEL,
        LOINC,
        MEASUREMENTS,
        SNOMED,
        UCUM,
    )
    from models.questionnaires import PATHWAY_QUESTIONNAIRE, QUESTIONNAIRE_DIR

    out: list[str] = [
        "# Information model",
        "",
        "<!-- GENERATED by `python -m service.information_model` from the code's own definitions;",
        "     do not edit by hand. tests/test_information_model.py fails when this file is stale. -->",
        "",
        "Every resource, element, code system and unit the service reads or writes. Measurement",
        "codes and units come from `models/measurements.py`, the model's inputs from",
        "`models/features.py`, questionnaires from `models/questionnaires/`, and the elements of",
        "each written resource from rendering the real builders (`service/fhir/outputs.py`, and",
        "`service/fhir/bulk.py` for the pseudonymised bulk export).",
        "",
        "## 1. Resources and how they refer to each other",
        "",
        "```mermaid",
        "flowchart LR",
        "  VKP[VKP device gateway] -- Observation --> SVC((triage service))",
        "  HN[Helsenorge] -- QuestionnaireResponse --> SVC",
        "  SVC -- Task: questionnaire due --> HN",
        "  QuestionnaireResponse -- basedOn --> QTask[Task: questionnaire]",
        "  QTask -- focus --> Questionnaire",
        "  SVC -- RiskAssessment, Task, DetectedIssue --> DIPS[DIPS Arena]",
        "  SVC -- pseudonymised NDJSON --> REG[quality registry / research]",
        "  Observation -- subject --> Patient",
        "  QuestionnaireResponse -- subject --> Patient",
        "  QuestionnaireResponse -- questionnaire --> Questionnaire",
        "  RiskAssessment -- basis --> Observation",
        "  RiskAssessment -- basis --> QuestionnaireResponse",
        "  RiskAssessment -- subject --> Patient",
        "  Task -- focus --> RiskAssessment",
        "  Task -- for --> Patient",
        "  DetectedIssue -- implicated --> RiskAssessment",
        "  DetectedIssue -- patient --> Patient",
        "  RiskAssessment -. method: pathway version .-> PlanDefinition",
        "```",
        "",
        "## 2. Resources read",
        "",
        "| resource | elements read |",
        "|---|---|",
    ]
    for rtype, elements in READ_ELEMENTS.items():
        out.append(f"| {rtype} | {'; '.join(elements)} |")
    out += ["", "## 3. Resources written", ""]
    systems: set[str] = set()
    for where, resource in sample_outputs():
        rtype = resource["resourceType"]
        every = set(_paths(resource, rtype))
        # Leaves only: `Task.focus.reference` says `Task.focus` too.
        paths = sorted(p for p in every if not any(q.startswith(p + ".") for q in every))
        systems |= set(_systems(resource))
        out.append(f"### {rtype} (`{where}`)")
        out.append("")
        out.append(", ".join(f"`{p}`" for p in paths))
        out.append("")
    out += [
        "## 4. Measurements, codes and units",
        "",
        "| name | LOINC | SNOMED CT | canonical UCUM unit | also accepted | plausible range |",
        "|---|---|---|---|---|---|",
    ]
    for m in MEASUREMENTS.values():
        accepted = ", ".join(f"`{u}`" for u in sorted(m.conversions) if u != m.unit)
        out.append(
            f"| {m.name} | {', '.join(m.loinc)} | {', '.join(m.snomed)} | `{m.unit}` | "
            f"{accepted} | {m.plausible_min:g}–{m.plausible_max:g} |"
        )
    out += [
        "",
        f"Blood pressure panel: LOINC {', '.join(BLOOD_PRESSURE_PANEL['loinc'])}, SNOMED CT "
        f"{', '.join(BLOOD_PRESSURE_PANEL['snomed'])}.",
        "",
        "Consciousness (ACVPU), SNOMED CT: "
        + ", ".join(f"{k} {v}" for k, v in ACVPU_SNOMED.items())
        + ".",
        "",
        "## 5. Model inputs (the feature vector)",
        "",
        "| feature | from | kind | unit | bokmål | English |",
        "|---|---|---|---|---|---|",
    ]
    for f in FEATURES:
        out.append(
            f"| `{f.name}` | {f.channel or 'patient'} | {f.kind} | {f.unit} | {f.label_nb} | "
            f"{f.label_en} |"
        )
    out += ["", "Age bands: " + ", ".join(AGE_BAND_LABELS) + ".", "", "## 6. Questionnaires", ""]
    for pathway, qid in sorted(PATHWAY_QUESTIONNAIRE.items()):
        document = json.loads((QUESTIONNAIRE_DIR / f"{qid}.json").read_text(encoding="utf-8"))
        systems |= set(_systems(document))
        out.append(
            f"### {qid} (pathway `{pathway}`): `{document.get('url')}` version "
            f"{document.get('version')}"
        )
        out.append("")
        out.append("| linkId | type | answers (code: weight) |")
        out.append("|---|---|---|")
        for item in document.get("item", []):
            answers = []
            for option in item.get("answerOption", []):
                coding = option.get("valueCoding", {})
                weights = [
                    e.get("valueDecimal")
                    for e in coding.get("extension", [])
                    if str(e.get("url", "")).endswith(("itemWeight", "ordinalValue"))
                ]
                weight = f": {weights[0]:g}" if weights else ""
                answers.append(f"{coding.get('code')}{weight}")
            out.append(f"| {item.get('linkId')} | {item.get('type')} | {', '.join(answers)} |")
        out.append("")
    systems |= {LOINC, SNOMED, UCUM, FNR_SYSTEM, DNR_SYSTEM, FHN_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM}
    out += ["## 7. Code and identifier systems", ""]
    out += [f"- `{s}`" for s in sorted(systems)]
    out.append("")
    return "\n".join(out)


def main() -> None:
    DOC_PATH.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {DOC_PATH}\n")


if __name__ == "__main__":
    main()
