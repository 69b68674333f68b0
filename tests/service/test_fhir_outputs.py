"""Every FHIR resource we emit is valid FHIR R4 (4.0.1, tests/fhir_r4.py) and carries the clinical
content."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.fhir import outputs
from tests.fhir_r4 import validate_r4
from tests.helpers import enrol, observation, post_fhir

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# Completeness: every resource type the service emits must be validated here.
VALIDATED = {
    "RiskAssessment",
    "Task",
    "DetectedIssue",
    "Patient",
    "Bundle",
    "CapabilityStatement",
}


def test_every_emitted_resource_type_is_validated():
    from service.fhir import search

    emitted = {
        "RiskAssessment",
        "Task",
        "DetectedIssue",
        "Patient",
        "Bundle",
        "CapabilityStatement",
        "OperationOutcome",
    }
    # OperationOutcome is validated in test_operation_outcome_parses below; Observation and
    # QuestionnaireResponse are what senders sent, read back (test_fhir_read_search.py).
    assert emitted - {"OperationOutcome"} == VALIDATED
    builders = {name for name in dir(outputs) if not name.startswith("_")}
    assert {"risk_assessment", "task", "detected_issues", "patient"} <= builders
    assert {"searchset", "capability_statement"} <= set(dir(search))


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


def entries(bundle_json: dict, rtype: str):
    bundle = validate_r4(bundle_json)
    assert bundle.type == "searchset"
    found = [e.resource for e in bundle.entry or []]
    assert all(type(r).__name__ == rtype for r in found)
    return found


def test_risk_assessment_content(client, auth, scored_patient):
    response = client.get(
        f"/fhir/RiskAssessment?subject=Patient/{scored_patient}", headers=auth("clinician")
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    latest = entries(response.json(), "RiskAssessment")[0]
    assert latest.subject.reference == f"Patient/{scored_patient}"
    prediction = latest.prediction[0]
    assert 0.0 < float(prediction.probabilityDecimal) < 1.0
    assert prediction.qualitativeRisk.coding[0].code in {"high", "moderate", "low"}
    assert "handmade-test-model 0.0.1" in latest.method.coding[0].display
    assert len(latest.basis) == 9 and latest.basis[0].reference.startswith("Observation/")
    assert "SpO2" in prediction.rationale


def test_task_worklist_content(client, auth, scored_patient):
    response = client.get("/fhir/Task?status=requested", headers=auth("integration"))
    [task] = entries(response.json(), "Task")
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
    issue = validate_r4(issue_json)
    assert issue.severity == "high" and issue.code.text == "SpO2 under 88 %"
    assert issue.patient.reference == f"Patient/{scored_patient}"
    response = client.get(
        f"/fhir/DetectedIssue?patient=Patient/{scored_patient}", headers=auth("clinician")
    )
    assert response.status_code == 200
    validate_r4(response.json())


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
    meta = validate_r4(ra["entry"][0]["resource"]).meta
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
    statement = validate_r4(response.json())
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
    response = post_fhir(
        client, "/fhir/Observation", {"resourceType": "Observation"}, auth("integration")
    )
    outcome = validate_r4(response.json())
    assert outcome.issue[0].severity == "error"


def test_every_rule_type_maps_to_a_vkp_alert_code():
    from models.rules.schema import RULE_TYPES

    assert set(outputs.RULE_TYPE_TO_VKP_ALERT) == set(RULE_TYPES)
    assert set(outputs.RULE_TYPE_TO_VKP_ALERT.values()) <= set(outputs.VKP_ALERT_DISPLAY)
    missed_questionnaire = {"type": "missed", "values": {"measurement": "symptom_score"}}
    assert outputs.vkp_alert_code(missed_questionnaire) == "2.1"
    assert outputs.vkp_alert_code({"type": "missed", "values": {"measurement": "spo2"}}) == "2.2"
    assert outputs.vkp_alert_code({"type": "bands"}) == "1.1"
    assert outputs.vkp_alert_code({"type": "score"}) == "0"


def test_outputs_declare_the_profiles_they_meet(client, auth, scored_patient):
    """DetectedIssue declares VkpDetectedIssue (code from the VKP alert codes); Task, RiskAssessment
    and Patient declare the FHIR R4 core profile; all validate as R4."""
    headers = auth("integration")
    for rtype, param in (("RiskAssessment", "subject"), ("Task", "patient")):
        bundle = client.get(f"/fhir/{rtype}?{param}=Patient/{scored_patient}", headers=headers)
        resource = bundle.json()["entry"][0]["resource"]
        validate_r4(resource)
        assert resource["meta"]["profile"] == [outputs.PROFILES[rtype]]
    patient = client.get(f"/fhir/Patient/{scored_patient}", headers=headers).json()
    validate_r4(patient)
    assert patient["meta"]["profile"] == [outputs.PROFILES["Patient"]]
    issues = client.get(f"/fhir/DetectedIssue?patient=Patient/{scored_patient}", headers=headers)
    found = [e["resource"] for e in issues.json()["entry"]]
    assert found, "the 85 % reading fires at least one rule"
    for issue in found:
        validate_r4(issue)
        assert issue["meta"]["profile"] == [
            "http://ehelse.no/fhir/StructureDefinition/vkp-DetectedIssue-v090"
        ]
        vkp = issue["code"]["coding"][0]
        assert vkp["system"] == "http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090"
        assert vkp["code"] in outputs.VKP_ALERT_DISPLAY
