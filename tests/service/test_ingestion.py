"""FHIR ingestion: validation with located errors, idempotency, batch and transaction, on both stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.db.tables import IngestedResource, Reading
from tests.helpers import (
    blood_pressure,
    enrol,
    observation,
    post_fhir,
    questionnaire_response,
)

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def settings(make_settings, any_database_url):
    return make_settings(database_url=any_database_url)


@pytest.fixture
def patient(client, auth):
    return enrol(client, auth("clinician"))


@pytest.fixture
def integration(auth):
    return auth("integration")


def count(client: TestClient, table) -> int:
    with client.app.state.sessions() as session:
        return session.scalar(select(func.count()).select_from(table))


def readings(client: TestClient) -> list[tuple[str, float]]:
    with client.app.state.sessions() as session:
        return [(r.name, r.value) for r in session.scalars(select(Reading).order_by(Reading.id))]


def test_observation_is_stored_scored_and_retry_is_not_a_duplicate(client, patient, integration):
    obs = observation(patient["id"], "spo2", 93, NOW, "msg-1")
    first = post_fhir(client, "/fhir/Observation", obs, integration)
    assert first.status_code == 201, first.text
    assert first.headers["content-type"].startswith("application/fhir+json")
    again = post_fhir(client, "/fhir/Observation", obs, integration)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert count(client, IngestedResource) == 1
    assert readings(client) == [("spo2", 93.0)]


def test_same_identifier_with_other_content_is_a_conflict(client, patient, integration):
    post_fhir(
        client, "/fhir/Observation", observation(patient["id"], "spo2", 93, NOW, "m"), integration
    )
    clash = post_fhir(
        client, "/fhir/Observation", observation(patient["id"], "spo2", 88, NOW, "m"), integration
    )
    assert clash.status_code == 409
    assert clash.json()["issue"][0]["expression"] == ["Observation.identifier"]


@pytest.mark.parametrize(
    "measurement, value, unit, expected",
    [
        ("weight", 176.0, "[lb_av]", 79.8322),
        ("temperature", 100.4, "[degF]", 38.0),
        ("weight", 80500, "g", 80.5),
    ],
)
def test_foreign_units_are_converted_to_canonical(
    client, patient, integration, measurement, value, unit, expected
):
    obs = observation(patient["id"], measurement, value, NOW, "u1", unit=unit)
    assert post_fhir(client, "/fhir/Observation", obs, integration).status_code == 201
    [(name, stored)] = readings(client)
    assert name == measurement
    assert stored == pytest.approx(expected, abs=1e-3)


def test_blood_pressure_panel_is_split_into_components(client, patient, integration):
    bp = blood_pressure(patient["id"], 142, 88, NOW, "bp-1")
    assert post_fhir(client, "/fhir/Observation", bp, integration).status_code == 201
    assert sorted(readings(client)) == [("diastolic_bp", 88.0), ("systolic_bp", 142.0)]


def test_snomed_only_coding_is_accepted(client, patient, integration):
    obs = observation(patient["id"], "heart_rate", 72, NOW, "sn-1")
    obs["code"]["coding"] = [c for c in obs["code"]["coding"] if "snomed" in c["system"]]
    assert post_fhir(client, "/fhir/Observation", obs, integration).status_code == 201


def test_subject_by_fodselsnummer_identifier(client, patient, integration):
    obs = observation(patient["id"], "spo2", 95, NOW, "id-1")
    obs["subject"] = {
        "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "15076500565"}
    }
    response = post_fhir(client, "/fhir/Observation", obs, integration)
    assert response.status_code == 201, response.text
    # The number resolved to the enrolled patient: the reading is theirs.
    with client.app.state.sessions() as session:
        stored = session.scalars(select(Reading)).all()
        assert [(r.patient_id, r.name, r.value) for r in stored] == [(patient["id"], "spo2", 95.0)]


def _mutate(obs: dict, path: str, value) -> dict:
    node = obs
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is ...:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return obs


@pytest.mark.parametrize(
    "path, value, location",
    [
        ("valueQuantity.value", 186, "Observation.valueQuantity.value"),
        ("valueQuantity.value", "93", "Observation.valueQuantity.value"),
        ("valueQuantity.code", "mmol/L", "Observation.valueQuantity.code"),
        ("valueQuantity.system", "http://example.org/units", "Observation.valueQuantity.system"),
        ("valueQuantity", ..., "Observation.valueQuantity"),
        (
            "code.coding",
            [{"system": "http://loinc.org", "code": "1234-5"}],
            "Observation.code.coding",
        ),
        ("status", "cancelled", "Observation.status"),
        # entered-in-error withdraws a received resource; with nothing received it is refused.
        ("status", "entered-in-error", "Observation.identifier"),
        ("effectiveDateTime", "2999-01-01T00:00:00+00:00", "Observation.effectiveDateTime"),
        ("effectiveDateTime", "yesterday", "Observation.effectiveDateTime"),
        ("effectiveDateTime", "2026-01-01T10:00:00", "Observation.effectiveDateTime"),
        ("subject", {"reference": "Patient/unknown"}, "Observation.subject"),
        ("subject", {"reference": "Group/1"}, "Observation.subject.reference"),
        ("subject", ..., "Observation.subject"),
    ],
)
def test_invalid_observation_is_refused_naming_the_element(
    client, patient, integration, path, value, location
):
    obs = _mutate(observation(patient["id"], "spo2", 93, NOW, "bad"), path, value)
    response = post_fhir(client, "/fhir/Observation", obs, integration)
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [location]
    assert count(client, IngestedResource) == 0


def test_unknown_subject_identifier_is_not_echoed(client, patient, integration):
    obs = observation(patient["id"], "spo2", 93, NOW, "x")
    obs["subject"] = {
        "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "01010112345"}
    }
    response = post_fhir(client, "/fhir/Observation", obs, integration)
    assert response.status_code == 422
    assert "01010112345" not in response.text


@pytest.mark.parametrize(
    "body, content_type, status",
    [
        (b"{not json", "application/fhir+json", 400),
        (b"[]", "application/fhir+json", 422),
        (b'{"resourceType": "Patient"}', "application/fhir+json", 422),
        (b'{"resourceType": "Observation"}', "text/plain", 415),
        (
            json.dumps(
                {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}
            ).encode(),
            "application/fhir+json",
            400,
        ),
    ],
)
def test_malformed_bodies_get_4xx_operation_outcomes(
    client, integration, body, content_type, status
):
    response = client.post(
        "/fhir/Observation", content=body, headers={**integration, "Content-Type": content_type}
    )
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


def test_oversized_body_gets_413(make_settings, database_url, auth):
    from service.app import create_app
    from tests.helpers import migrate_test_database as migrate

    settings = make_settings(database_url=database_url, max_body_bytes=2000)
    migrate(settings.resolved_database_url)
    with TestClient(create_app(settings)) as small:
        response = small.post(
            "/fhir",
            content=b"{" + b" " * 5000 + b"}",
            headers={**auth("integration"), "Content-Type": "application/fhir+json"},
        )
    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"


def _bundle(kind: str, resources: list[dict]) -> dict:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in resources
        ],
    }


def test_batch_answers_per_entry_and_keeps_the_good_ones(client, patient, integration):
    pid = patient["id"]
    resources = [
        observation(pid, "spo2", 95, NOW - timedelta(hours=2), "b1"),
        observation(pid, "spo2", 250, NOW - timedelta(hours=1), "b2"),
        observation(pid, "heart_rate", 80, NOW, "b3"),
    ]
    response = post_fhir(client, "/fhir", _bundle("batch", resources), integration)
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created", "422", "201 Created"]
    issue = body["entry"][1]["response"]["outcome"]["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].resource.valueQuantity.value"]
    assert count(client, IngestedResource) == 2
    again = post_fhir(client, "/fhir", _bundle("batch", resources), integration).json()
    assert [e["response"]["status"] for e in again["entry"]] == ["200 OK", "422", "200 OK"]
    assert count(client, IngestedResource) == 2


def test_transaction_is_all_or_nothing(client, patient, integration):
    pid = patient["id"]
    good = [observation(pid, "spo2", 95, NOW, "t1"), questionnaire_response(pid, NOW, "t2")]
    bad = [*good, observation(pid, "temperature", 12, NOW, "t3")]
    refused = post_fhir(client, "/fhir", _bundle("transaction", bad), integration)
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == [
        "Bundle.entry[2].resource.valueQuantity.value"
    ]
    assert count(client, IngestedResource) == 0 and count(client, Reading) == 0
    accepted = post_fhir(client, "/fhir", _bundle("transaction", good), integration)
    assert accepted.status_code == 200
    assert accepted.json()["type"] == "transaction-response"
    assert count(client, IngestedResource) == 2


def test_transaction_with_unknown_subject_stores_nothing(client, patient, integration):
    entries = [
        observation(patient["id"], "spo2", 95, NOW, "k1"),
        observation("no-such-patient", "spo2", 95, NOW, "k2"),
    ]
    response = post_fhir(client, "/fhir", _bundle("transaction", entries), integration)
    assert response.status_code == 422
    assert count(client, IngestedResource) == 0


@pytest.mark.parametrize(
    "bundle, location",
    [
        ({"resourceType": "Bundle", "type": "collection", "entry": []}, "Bundle.type"),
        ({"resourceType": "Bundle", "type": "batch", "entry": []}, "Bundle.entry"),
        ({"resourceType": "Bundle", "type": "batch", "entry": "x"}, "Bundle.entry"),
    ],
)
def test_malformed_bundles(client, integration, bundle, location):
    response = post_fhir(client, "/fhir", bundle, integration)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == [location]


def test_questionnaire_response_is_scored(client, patient, integration):
    qr = questionnaire_response(patient["id"], NOW, "q-1")
    assert post_fhir(client, "/fhir/QuestionnaireResponse", qr, integration).status_code == 201
    stored = dict(readings(client))
    # moderate(2) + mild(1) + yellow(1) + more(2) of 12 points -> 5.0 on the 0–10 scale
    assert stored["symptom_score"] == pytest.approx(5.0)
    assert stored["on_oxygen"] == 0.0 and stored["consciousness"] == 0.0
    assert stored["q:copd-symptoms:dyspnoea"] == 2.0


def test_questionnaire_response_with_unknown_answer_is_refused(client, patient, integration):
    qr = questionnaire_response(patient["id"], NOW, "q-2", {"dyspnoea": "unbearable"})
    response = post_fhir(client, "/fhir/QuestionnaireResponse", qr, integration)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["QuestionnaireResponse.item"]


def test_resource_type_must_match_endpoint(client, patient, integration):
    qr = questionnaire_response(patient["id"], NOW, "q-3")
    response = post_fhir(client, "/fhir/Observation", qr, integration)
    assert response.status_code == 422
