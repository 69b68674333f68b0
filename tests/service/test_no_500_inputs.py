"""Malformed input that once answered 500 (and dropped the keep-alive connection) now gets a 4xx
whose message names the field; a later request on the same client still works."""

from __future__ import annotations

import json
from typing import Any

import pytest

from models.features import N_FEATURES
from tests.helpers import FNR_ADULT

MODEL = "handmade-test-model"


def _features(**extra: Any) -> dict[str, Any]:
    return {
        "name": "features",
        "datatype": "FP32",
        "shape": [1, N_FEATURES],
        "data": [0.0] * N_FEATURES,
        **extra,
    }


def _infer(client: Any, headers: dict[str, str], body: Any) -> Any:
    return client.post(
        f"/v2/models/{MODEL}/infer",
        content=json.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    "identifier",
    [
        5,
        "15076500565",
        {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR_ADULT},
        [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": 15076500565}],
        ["15076500565"],
    ],
)
def test_cds_hooks_prefetch_identifier_of_the_wrong_type_is_4xx_naming_it(client, auth, identifier):
    body = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": "patient-view",
        "context": {"userId": "Practitioner/hpr-9144889", "patientId": "dips-1"},
        "prefetch": {"patient": {"resourceType": "Patient", "identifier": identifier}},
    }
    response = client.post("/cds-services/home-followup-risk", json=body, headers=auth("admin"))
    assert 400 <= response.status_code < 500, response.text
    if response.status_code == 422:
        assert "prefetch.patient.identifier" in response.text
    assert FNR_ADULT not in response.text


def test_cds_hooks_prefetch_value_with_a_nul_byte_is_not_a_500(client, auth):
    body = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": "patient-view",
        "context": {"userId": "Practitioner/hpr-9144889", "patientId": "dips-1"},
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "1\x00"}],
            }
        },
    }
    response = client.post("/cds-services/home-followup-risk", json=body, headers=auth("admin"))
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize(
    "stamp",
    [
        "eq0001-01-01T00:00:00+14:00",
        "ge0001-01-01T00:00:00+14:00",
        "lt9999-12-31T23:59:59-14:00",
        "eqnot-a-date",
    ],
)
def test_task_search_with_an_out_of_range_last_updated_is_4xx_naming_it(client, auth, stamp):
    response = client.get("/fhir/Task", params={"_lastUpdated": stamp}, headers=auth("admin"))
    assert response.status_code in (400, 422), response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["_lastUpdated"]
    # The connection is still usable.
    assert client.get("/fhir/metadata", headers=auth("admin")).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"inputs": [_features()], "outputs": [{"name": "probability", "parameters": []}]},
            "outputs[0].parameters",
        ),
        (
            {"inputs": [_features()], "outputs": [{"name": "probability", "parameters": "x"}]},
            "outputs[0].parameters",
        ),
        ({"inputs": [_features(parameters=[1])]}, "inputs[0].parameters"),
        (
            {"inputs": [_features(parameters={"binary_data_size": "12"})]},
            "binary_data_size",
        ),
        ({"inputs": [_features()], "outputs": [{"name": ["probability"]}]}, "unknown output"),
        ({"inputs": [_features(datatype=["FP32"])]}, "datatype"),
    ],
)
def test_v2_infer_with_malformed_parameters_is_400_naming_the_field(client, auth, body, field):
    response = _infer(client, auth("admin"), body)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]


def test_a_chunked_v2_body_over_the_limit_is_413(make_settings, database_url):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.helpers import migrate_test_database

    settings = make_settings(database_url=database_url, max_body_bytes=4096)
    migrate_test_database(database_url)
    from service.security.principal import Role
    from service.security.tokens import DEV_ORGANISATION, issue_dev_token

    token = issue_dev_token(settings, Role.ADMIN, DEV_ORGANISATION, None, None)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def chunks() -> Any:  # a generator body: sent chunked, with no Content-Length
        yield b'{"inputs": [{"name": "features", "data": ['
        for _ in range(200):
            yield b"0.0, " * 20
        yield b"0.0]}]}"

    with TestClient(create_app(settings)) as client:
        response = client.post(f"/v2/models/{MODEL}/infer", content=chunks(), headers=headers)
        assert response.status_code == 413, response.text
        assert "exceeds 4096 bytes" in response.text
        # A chunked FHIR body over the limit is refused the same way.
        response = client.post(
            "/fhir/Observation",
            content=chunks(),
            headers={**headers, "Content-Type": "application/fhir+json"},
        )
        assert response.status_code == 413, response.text
