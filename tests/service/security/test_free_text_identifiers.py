"""Issue 12, findings 5 and 9 (last point) and "Free text": a national identity number is refused
in every written form, wherever people type text, and never stored or echoed.

Each free-text field is tried with the ``ddmmyy-nnnnn`` form that the old checks missed, and the
enrolment with digits from other scripts that used to create a second patient.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from models.identifiers import FNR_SYSTEM
from service.observability import JsonFormatter, redact
from tests.helpers import FNR_ADULT, ORG, enrol, observation, post_fhir

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
HYPHENATED = f"{FNR_ADULT[:6]}-{FNR_ADULT[6:]}"  # ddmmyy-nnnnn
FULL_WIDTH = "".join(chr(0xFF10 + int(c)) for c in FNR_ADULT)
ARABIC_INDIC = "".join(chr(0x0660 + int(c)) for c in FNR_ADULT)


def _refused_without_echo(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body.get("location") == field or field in response.text
    assert "identity number" in response.text
    for digits in (FNR_ADULT, HYPHENATED, FNR_ADULT[6:]):
        assert digits not in response.text


@pytest.mark.parametrize("spelling", [FULL_WIDTH, ARABIC_INDIC], ids=["full-width", "arabic"])
def test_one_person_cannot_be_enrolled_twice_in_other_digits(
    client: Any, auth: Any, spelling: str
) -> None:
    clinician = auth("clinician")
    enrol(client, clinician)
    again = client.post(
        "/api/v1/patients",
        headers=clinician,
        json={
            "identifier": spelling,
            "birth_date": "1965-07-15",
            "sex": "female",
            "pathway": "copd",
            "organisation": ORG,
            "unit": "lungs",
        },
    )
    assert again.status_code == 422, again.text  # was 201: a second patient for one person
    assert again.json()["location"] == "identifier"
    assert "digits 0–9" in again.json()["detail"]
    assert len(client.get("/api/v1/worklist", headers=clinician).json()) == 0


def test_a_2032_number_of_someone_born_in_1932_can_be_enrolled(client: Any, auth: Any) -> None:
    # From 2032 the individual number no longer tells the century (Skatteetaten, "Nytt
    # fødselsnummer fra 2032"): 30103299914 (K1 leaves remainder 1) may belong to someone born
    # 30.10.1932. The old check derived 2032 from it and refused the register's birth date.
    body = {
        "identifier": "30103299914",
        "birth_date": "1932-10-30",
        "sex": "female",
        "pathway": "copd",
        "organisation": ORG,
        "unit": "lungs",
    }
    clinician = auth("clinician")
    wrong_day = client.post(
        "/api/v1/patients", headers=clinician, json={**body, "birth_date": "1932-10-31"}
    )
    assert wrong_day.status_code == 422 and wrong_day.json()["location"] == "birth_date"
    enrolled = client.post("/api/v1/patients", headers=clinician, json=body)
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["birth_date"] == "1932-10-30"


def test_fhir_subject_identifier_in_other_digits_is_refused(client: Any, auth: Any) -> None:
    integration = auth("integration")
    patient = enrol(client, auth("clinician"))
    resource = observation(patient["id"], "spo2", 95, NOW, "fw-1")
    resource["subject"] = {"identifier": {"system": FNR_SYSTEM, "value": FULL_WIDTH}}
    response = post_fhir(client, "/fhir/Observation", resource, integration)
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Observation.subject.identifier.value"]
    assert "digits 0–9" in issue["diagnostics"]


def _red_item(client: Any, auth: Any) -> tuple[str, dict[str, str]]:
    clinician = auth("clinician", subject="hpr-1234567")
    pid = enrol(client, clinician)["id"]
    post_fhir(
        client, "/fhir/Observation", observation(pid, "spo2", 82, NOW, "red-1"), auth("integration")
    )
    return client.get("/api/v1/worklist", headers=clinician).json()[0]["id"], clinician


@pytest.mark.parametrize(
    "note",
    [HYPHENATED, f"Ringte {FNR_ADULT[:6]} {FNR_ADULT[6:]}", f"fnr {FNR_ADULT[:6]}.{FNR_ADULT[6:]}"],
)
def test_worklist_note_with_an_identity_number_is_refused_and_not_stored(
    client: Any, auth: Any, note: str
) -> None:
    item, clinician = _red_item(client, auth)
    response = client.post(
        f"/api/v1/worklist/{item}/acknowledge", json={"note": note}, headers=clinician
    )
    _refused_without_echo(response, "note")
    from service.db.tables import WorklistEvent

    with client.app.state.sessions() as session:
        notes = session.scalars(select(WorklistEvent.note)).all()
    assert not [n for n in notes if n and FNR_ADULT[6:] in n.replace(" ", "").replace(".", "")]
    [still] = client.get("/api/v1/worklist", headers=clinician).json()
    assert still["state"] == "open"


def test_pathway_publish_reason_and_document_are_checked(client: Any, auth: Any) -> None:
    clinician = auth("clinician")
    doc = client.get("/api/v1/pathways/copd", headers=clinician).json()["pathway"]
    reason = client.put(
        "/api/v1/pathways/copd",
        headers=clinician,
        json={"pathway": doc, "reason": f"Avtalt med pasient {HYPHENATED}"},
    )
    _refused_without_echo(reason, "reason")
    in_doc = {**doc, "description": f"Laget for {HYPHENATED}"}
    document = client.put(
        "/api/v1/pathways/copd",
        headers=clinician,
        json={"pathway": in_doc, "reason": "New description"},
    )
    _refused_without_echo(document, "pathway.description")
    versions = client.get("/api/v1/pathways/copd/versions", headers=clinician)
    assert FNR_ADULT[6:] not in versions.text


def test_override_reason_with_an_identity_number_is_refused(client: Any, auth: Any) -> None:
    clinician = auth("clinician")
    pid = enrol(client, clinician)["id"]
    response = client.post(
        f"/api/v1/patients/{pid}/overrides",
        headers=clinician,
        json={
            "rule": "spo2-low",
            "thresholds": {"red": 84},
            "reason": f"Gjelder {HYPHENATED}, stabil KOLS",
            "expires_at": (NOW + timedelta(days=30)).isoformat(),
        },
    )
    _refused_without_echo(response, "reason")
    assert client.get(f"/api/v1/patients/{pid}/overrides", headers=clinician).json() == []


def test_sign_off_comment_in_the_hyphenated_form_is_refused(client: Any, auth: Any) -> None:
    # Finding 9: `\d{6}\s?\d{5}` let ddmmyy-nnnnn through and the comment was stored. The check
    # now runs before the report is even looked up, so this unknown report answers 422, not 404.
    response = client.post(
        "/api/v1/monitoring/drift-reports/no-such-report/sign-off",
        headers=auth("compliance"),
        json={"decision": "accepted", "comment": f"Sjekket pasient {HYPHENATED}"},
    )
    _refused_without_echo(response, "comment")


def test_log_redaction_covers_every_written_form(caplog: pytest.LogCaptureFixture) -> None:
    # Finding 9: the log redaction missed ddmmyy-nnnnn.
    for form in (HYPHENATED, f"{FNR_ADULT[:6]}.{FNR_ADULT[6:]}", FULL_WIDTH, FNR_ADULT):
        assert redact(f"lookup {form} failed") == "lookup [redacted-id] failed"
    record = logging.LogRecord("triage", logging.INFO, __file__, 1, "for %s", (HYPHENATED,), None)
    assert FNR_ADULT[6:] not in JsonFormatter().format(record)


# Free-text request fields and the domain call that refuses a person number in each. A new
# route with a field of one of these names fails the test below until it is added here, which
# means: call service.domain.free_text.refuse_person_number for it, and test it above.
FREE_TEXT_NAMES = {"note", "reason", "comment", "source", "legal_basis", "justification", "text"}
CHECKED = {
    ("POST", "/api/v1/worklist/{item_id}/{action}", "note"),  # WorklistService.transition
    ("PUT", "/api/v1/pathways/{pathway_id}", "reason"),  # PathwayService.publish
    ("POST", "/api/v1/pathways/{pathway_id}/versions/{version}/approve", "reason"),  # decide
    ("POST", "/api/v1/pathways/{pathway_id}/versions/{version}/reject", "reason"),  # decide
    ("POST", "/api/v1/patients/{patient_id}/overrides", "reason"),  # add_override
    ("POST", "/api/v1/monitoring/drift-reports/{report_id}/sign-off", "comment"),  # sign_off
    ("POST", "/api/v1/outcomes", "source"),  # OutcomeService.record
    ("POST", "/api/v1/patients/{patient_id}/transfer", "reason"),  # SharingService.transfer
    ("POST", "/api/v1/patients/{patient_id}/transfer", "legal_basis"),  # SharingService.transfer
    ("POST", "/api/v1/patients/{patient_id}/grants", "reason"),  # SharingService.grant
    ("POST", "/api/v1/patients/{patient_id}/grants", "legal_basis"),  # SharingService.grant
}


def _free_text_fields(spec: dict[str, Any]) -> set[tuple[str, str, str]]:
    schemas = spec.get("components", {}).get("schemas", {})

    def resolve(node: dict[str, Any]) -> list[dict[str, Any]]:
        if "$ref" in node:
            return resolve(schemas[node["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in node:
            return [n for option in node["anyOf"] for n in resolve(option)]
        return [node]

    found = set()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                for schema in resolve(content.get("schema", {})):
                    for name in schema.get("properties", {}):
                        if name in FREE_TEXT_NAMES:
                            found.add((method.upper(), path, name))
    return found


def test_every_free_text_field_of_the_api_is_checked(app: Any) -> None:
    found = _free_text_fields(app.openapi())
    assert found, "the API has no free-text fields: the name list is out of date"
    unchecked = sorted(found - CHECKED)
    assert not unchecked, (
        f"free-text fields without the person-number check: {unchecked}; call "
        "service.domain.free_text.refuse_person_number for them and list them in CHECKED"
    )
    assert not CHECKED - found, f"CHECKED lists fields the API no longer has: {CHECKED - found}"
