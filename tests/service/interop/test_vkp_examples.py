"""HL7 Norway's published VKP examples, posted as they are with only the patient adapted.

The fixtures are in tests/data/vkp (see its README for where each came from).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import enrol, post_fhir

VKP = Path(__file__).parents[2] / "data" / "vkp"
OBSERVATIONS = {
    "Observation-blood-pressure-create.json": {"systolic_bp": 123, "diastolic_bp": 78},
    "Observation-vkp-blood-pressure-create.json": {"systolic_bp": 123, "diastolic_bp": 78},
    "Observation-heart-rate-create.json": {"heart_rate": 61},
    "Observation-oxygen-saturation-create.json": {"spo2": 96},
    "Observation-body-temperature-create.json": {"temperature": 37},
    "Observation-body-weight-create.json": {"weight": 49},
    "Observation-vkp-glucose-create.json": {"glucose": 6.3},
}


def published(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VKP / name).read_text(encoding="utf-8"))
    return data


def for_patient(resource: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """The example as published, with only its subject pointing at our enrolled patient."""
    adapted = copy.deepcopy(resource)
    adapted["subject"] = {"reference": f"Patient/{patient_id}"}
    return adapted


def stored_readings(app: Any, resource_id: str) -> dict[str, float]:
    from sqlalchemy import select

    from service.db.tables import Reading

    with app.state.sessions() as session:
        rows = session.execute(
            select(Reading.name, Reading.value).where(Reading.resource_id == resource_id)
        ).all()
    return {name: value for name, value in rows}


def test_fixtures_are_the_published_files() -> None:
    # The three raw .json files of the build are kept byte for byte; the others are written in
    # the same raw format (two-space indent, no final newline), which these three reproduce.
    for name in (
        "Observation-blood-pressure-create.json",
        "Observation-body-temperature-create.json",
        "Observation-body-weight-create.json",
        *OBSERVATIONS,
        "Bundle-pmd-Bundle-Request-example.json",
    ):
        text = (VKP / name).read_text(encoding="utf-8")
        assert json.dumps(json.loads(text), indent=2, ensure_ascii=False) == text, name
    assert (VKP / "README.md").read_text().count("89cbaad55f774d5f3849e8927f779d3fdaa6109e") >= 1


@pytest.mark.parametrize("name", sorted(OBSERVATIONS))
def test_published_vkp_example_is_accepted_and_stored(
    name: str, app: Any, client: Any, auth: Any
) -> None:
    patient = enrol(client, auth("clinician"))
    response = post_fhir(
        client,
        "/fhir/Observation",
        for_patient(published(name), patient["id"]),
        auth("integration"),
    )
    assert response.status_code == 201, response.text
    readings = stored_readings(app, response.json()["id"])
    for key, value in OBSERVATIONS[name].items():
        assert readings[key] == pytest.approx(value), (name, readings)


def test_published_batch_bundle_is_accepted(client: Any, auth: Any) -> None:
    patient = enrol(client, auth("clinician"))
    bundle = published("Bundle-pmd-Bundle-Request-example.json")
    for entry in bundle["entry"]:
        entry["resource"] = for_patient(entry["resource"], patient["id"])
    response = post_fhir(client, "/fhir", bundle, auth("integration"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "batch-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"]
