"""ACVPU (RCP NEWS2 chart): the five levels, letters and SNOMED CT codes are accepted wherever
consciousness is; NEWS2 scores 3 for any of new Confusion, Voice, Pain or Unresponsive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.measurements import ACVPU_SNOMED, consciousness_category
from tests.helpers import enrol, observation, post_fhir, questionnaire_response

NORMAL = {
    "respiratory_rate": 16,
    "spo2": 97,
    "on_oxygen": False,
    "systolic_bp": 125,
    "heart_rate": 72,
    "temperature": 37.0,
}
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@pytest.mark.parametrize(
    ("term", "category"),
    [
        ("alert", "alert"),
        ("A", "alert"),
        ("confusion", "cvpu"),
        ("new confusion", "cvpu"),
        ("voice", "cvpu"),
        ("pain", "cvpu"),
        ("unresponsive", "cvpu"),
        ("cvpu", "cvpu"),
        ("U", "cvpu"),
        *[(code, "alert" if level == "alert" else "cvpu") for code, level in ACVPU_SNOMED.items()],
    ],
)
def test_consciousness_category(term: str, category: str) -> None:
    assert consciousness_category(term) == category


def test_unknown_consciousness_term_is_refused() -> None:
    with pytest.raises(ValueError, match="ACVPU"):
        consciousness_category("sleepy")


@pytest.mark.parametrize(
    ("term", "news2"),
    [
        ("alert", 0),
        ("confusion", 3),
        ("voice", 3),
        ("pain", 3),
        ("unresponsive", 3),
        ("cvpu", 3),
        ("422768004", 3),
        ("248234008", 0),
    ],
)
def test_news2_scores_three_for_c_v_p_u(client: Any, auth: Any, term: str, news2: int) -> None:
    body = {"rule_set": "news2", "values": {**NORMAL, "consciousness": term}, "age_years": 70}
    response = client.post("/api/v1/rules/evaluate", json=body, headers=auth("clinician"))
    assert response.status_code == 200, response.text
    assert response.json()["scores"]["news2"] == news2


def test_rules_evaluate_refuses_an_unknown_level_naming_the_field(client: Any, auth: Any) -> None:
    body = {"rule_set": "news2", "values": {**NORMAL, "consciousness": "sleepy"}, "age_years": 70}
    response = client.post("/api/v1/rules/evaluate", json=body, headers=auth("clinician"))
    assert response.status_code == 422
    assert "consciousness" in response.text


def stored(app: Any, resource_id: str) -> dict[str, float]:
    from sqlalchemy import select

    from service.db.tables import Reading

    with app.state.sessions() as session:
        rows = session.execute(
            select(Reading.name, Reading.value).where(Reading.resource_id == resource_id)
        ).all()
    return dict(rows)


@pytest.mark.parametrize(("code", "value"), [("300202002", 1.0), ("248234008", 0.0)])
def test_vkp_consciousness_observation_with_snomed_level(
    app: Any, client: Any, auth: Any, code: str, value: float
) -> None:
    pid = enrol(client, auth("clinician"))["id"]
    obs = observation(pid, "heart_rate", 0, NOW, f"acvpu-{code}")
    del obs["valueQuantity"]
    obs["code"] = {
        "coding": [
            {
                "system": "http://snomed.info/sct",
                "code": "1104441000000107",
                "display": "Alert Confusion Voice Pain Unresponsive scale score",
            }
        ]
    }
    obs["valueCodeableConcept"] = {"coding": [{"system": "http://snomed.info/sct", "code": code}]}
    response = post_fhir(client, "/fhir/Observation", obs, auth("integration"))
    assert response.status_code == 201, response.text
    assert stored(app, response.json()["id"]) == {"consciousness": value}
    obs["identifier"][0]["value"] = f"acvpu-bad-{code}"
    obs["valueCodeableConcept"] = {"text": "sleepy"}
    refused = post_fhir(client, "/fhir/Observation", obs, auth("integration"))
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["Observation.valueCodeableConcept"]


def test_questionnaire_answer_with_an_acvpu_term(app: Any, client: Any, auth: Any) -> None:
    pid = enrol(client, auth("clinician"))["id"]
    qr = questionnaire_response(
        pid, NOW, "acvpu-qr", {"dyspnoea": "mild", "consciousness": "voice"}
    )
    response = post_fhir(client, "/fhir/QuestionnaireResponse", qr, auth("integration"))
    assert response.status_code == 201, response.text
    assert stored(app, response.json()["id"])["consciousness"] == 1.0
