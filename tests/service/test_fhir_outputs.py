"""Every FHIR resource we emit parses with fhir.resources (R4B) and carries the clinical content."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.riskassessment import RiskAssessment
from fhir.resources.R4B.task import Task

from service.fhir import outputs
from tests.helpers import enrol, observation, post_fhir

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# Completeness: every resource type the service emits must be validated here.
VALIDATED = {
    "RiskAssessment": RiskAssessment,
    "Task": Task,
    "DetectedIssue": DetectedIssue,
    "Bundle": Bundle,
    "CapabilityStatement": CapabilityStatement,
}


def test_every_emitted_resource_type_is_validated():
    emitted = {
        "RiskAssessment",
        "Task",
        "DetectedIssue",
        "Bundle",
        "CapabilityStatement",
        "OperationOutcome",
    }
    # OperationOutcome is validated in test_operation_outcome_parses below.
    assert emitted - {"OperationOutcome"} == set(VALIDATED)
    builders = {name for name in dir(outputs) if not name.startswith("_")}
    assert {
        "risk_assessment",
        "task",
        "detected_issues",
        "searchset",
        "capability_statement",
    } <= builders


@pytest.fixture
def scored_patient(client, auth):
    clinician, integration = auth("clinician"), auth("integration")
    pid = enrol(client, clinician)["id"]
    for d in range(8, 0, -1):
        post_fhir(
            client,
            "/fhir/Observation",
            observation(pid, "spo2", 96, NOW - timedelta(days=d), f"s{d}"),
            integration,
        )
    post_fhir(client, "/fhir/Observation", observation(pid, "spo2", 85, NOW, "last"), integration)
    return pid


def entries(bundle_json: dict, cls):
    bundle = Bundle.model_validate(bundle_json)
    assert bundle.type == "searchset"
    return [cls.model_validate(e.resource.model_dump()) for e in bundle.entry or []]


def test_risk_assessment_content(client, auth, scored_patient):
    response = client.get(
        f"/fhir/RiskAssessment?subject=Patient/{scored_patient}", headers=auth("clinician")
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    latest = entries(response.json(), RiskAssessment)[0]
    assert latest.subject.reference == f"Patient/{scored_patient}"
    prediction = latest.prediction[0]
    assert 0.0 < float(prediction.probabilityDecimal) < 1.0
    assert prediction.qualitativeRisk.coding[0].code in {"high", "moderate", "low"}
    assert "handmade-test-model 0.0.1" in latest.method.coding[0].display
    assert len(latest.basis) == 9 and latest.basis[0].reference.startswith("Observation/")
    assert "SpO2" in prediction.rationale


def test_task_worklist_content(client, auth, scored_patient):
    response = client.get("/fhir/Task?status=requested", headers=auth("integration"))
    [task] = entries(response.json(), Task)
    assert task.status == "requested" and task.intent == "plan"
    assert task.priority in {"asap", "urgent"}
    assert task.for_fhir.reference == f"Patient/{scored_patient}"
    assert task.focus.reference.startswith("RiskAssessment/")
    assert (
        client.get("/fhir/Task?status=completed", headers=auth("integration")).json()["total"] == 0
    )
    assert client.get("/fhir/Task?status=bogus", headers=auth("integration")).status_code == 422


def test_detected_issue_from_fired_rules_parses(client, auth, scored_patient):
    from service.db.tables import Assessment, Patient

    with client.app.state.sessions() as s:
        assessment = s.query(Assessment).order_by(Assessment.created_at.desc()).first()
        patient = s.get(Patient, scored_patient)
        assessment.explanation = {
            **assessment.explanation,
            "rules": [
                {
                    "rule": "spo2-red",
                    "level": "red",
                    "text_nb": "SpO2 under 88 %",
                    "text_en": "SpO2 below 88 %",
                }
            ],
        }
        [issue_json] = outputs.detected_issues(assessment, patient)
    issue = DetectedIssue.model_validate(issue_json)
    assert issue.severity == "high" and issue.code.text == "SpO2 under 88 %"
    assert issue.patient.reference == f"Patient/{scored_patient}"
    response = client.get(
        f"/fhir/DetectedIssue?patient=Patient/{scored_patient}", headers=auth("clinician")
    )
    assert response.status_code == 200
    Bundle.model_validate(response.json())


def test_confidential_patient_is_marked_restricted(client, auth):
    clinician = auth("clinician")
    pid = enrol(
        client,
        clinician,
        identifier="01011250013",
        birth_date="2012-01-01",
        pathway="paediatric",
        confidential_to_guardians=True,
    )["id"]
    post_fhir(
        client, "/fhir/Observation", observation(pid, "spo2", 85, NOW, "c1"), auth("integration")
    )
    ra = client.get(f"/fhir/RiskAssessment?subject=Patient/{pid}", headers=clinician).json()
    meta = RiskAssessment.model_validate(ra["entry"][0]["resource"]).meta
    assert meta.security[0].code == "R"


def test_paging_links(client, auth, scored_patient):
    first = client.get(
        f"/fhir/RiskAssessment?subject=Patient/{scored_patient}&_count=4", headers=auth("clinician")
    ).json()
    assert first["total"] == 9 and len(first["entry"]) == 4
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = client.get(next_url, headers=auth("clinician")).json()
    assert {e["resource"]["id"] for e in second["entry"]}.isdisjoint(
        {e["resource"]["id"] for e in first["entry"]}
    )


def test_capability_statement(client):
    response = client.get("/fhir/metadata")
    statement = CapabilityStatement.model_validate(response.json())
    assert statement.fhirVersion == "4.0.1"
    types = {r.type for r in statement.rest[0].resource}
    assert {
        "Observation",
        "QuestionnaireResponse",
        "RiskAssessment",
        "Task",
        "DetectedIssue",
    } <= types


def test_operation_outcome_parses(client, auth):
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    response = post_fhir(
        client, "/fhir/Observation", {"resourceType": "Observation"}, auth("integration")
    )
    outcome = OperationOutcome.model_validate(response.json())
    assert outcome.issue[0].severity == "error"
