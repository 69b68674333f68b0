"""Operating points in the service: pathways name them, the loaded model's manifest resolves
them, a reload re-resolves them (or is refused when a name is missing), the dry run and the
pathway page show what the budget buys, and every assessment, worklist item and FHIR resource
says whether its level came from a rule, the model, or both."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.helpers import enrol, observation, post_fhir

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _set_thresholds(folder: Path, thresholds: dict[str, float], version: str) -> None:
    """Rewrite the artifact's operating points (the ONNX bytes, and so the sha256, stay)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["version"] = version
    for entry in manifest["operating_points"]["pathways"].values():
        for name, point in entry["points"].items():
            if name in thresholds:
                point["threshold"] = thresholds[name]
    path.write_text(json.dumps(manifest))


@pytest.fixture
def own_artifact(tmp_path: Path, artifact_dir: Path) -> Path:
    folder = tmp_path / "artifact"
    shutil.copytree(artifact_dir, folder)
    return folder


@pytest.fixture
def settings(make_settings: Callable[..., Any], database_url: str, own_artifact: Path) -> Any:
    return make_settings(database_url=database_url, model_dir=own_artifact)


def _calm_copd_patient(client: TestClient, auth: Callable[..., dict[str, str]]) -> str:
    pid = enrol(client, auth("clinician"))["id"]
    for d in range(6, -1, -1):
        when = NOW - timedelta(days=d)
        for name, value in (("spo2", 96), ("heart_rate", 72), ("respiratory_rate", 16)):
            post_fhir(
                client,
                "/fhir/Observation",
                observation(pid, name, value, when, f"{name}-{d}"),
                auth("integration"),
            )
    return pid


def test_red_from_the_model_at_its_operating_point_says_so_everywhere(
    client: TestClient, auth: Callable[..., dict[str, str]], own_artifact: Path
) -> None:
    # budget-2 resolves to 0.0 for this model: any probability is red, from the model alone.
    _set_thresholds(own_artifact, {"budget-2": 0.0}, "0.0.2")
    assert client.post("/api/v1/models/reload", headers=auth("ml-engineer")).status_code == 200
    pid = _calm_copd_patient(client, auth)
    items = client.get("/api/v1/worklist", headers=auth("clinician")).json()
    item = next(i for i in items if i["patient"]["id"] == pid)
    assert (item["level"], item["level_source"], item["rules_fired"]) == ("red", "model", [])
    assessed = client.get(f"/api/v1/patients/{pid}/assessments", headers=auth("clinician")).json()
    assert assessed[0]["level_source"] == "model"
    assert assessed[0]["explanation"]["triage"]["model_thresholds"]["red"] == {
        "threshold": 0.0,
        "operating_point": "budget-2",
    }
    bundle = client.get(f"/fhir/RiskAssessment?subject=Patient/{pid}", headers=auth("clinician"))
    risk = bundle.json()["entry"][0]["resource"]
    assert {"url": risk["extension"][0]["url"], "valueCode": "model"} == risk["extension"][0]
    assert any(n["text"] == "Nivå satt av modellen" for n in risk["note"])
    tasks = client.get("/fhir/Task?status=requested", headers=auth("clinician")).json()
    task = next(
        e["resource"] for e in tasks["entry"] if e["resource"]["for"]["reference"].endswith(pid)
    )
    assert task["extension"][0]["valueCode"] == "model"
    page = client.get("/web/worklist", headers=auth("clinician"))
    if page.status_code == 200:  # the web page signs in by cookie; the API token may not do
        assert "the model" in page.text or "modellen" in page.text


def test_a_textbook_safety_limit_is_red_from_the_rule_whatever_the_model_says(
    client: TestClient, auth: Callable[..., dict[str, str]], own_artifact: Path
) -> None:
    # The model can never reach its thresholds (above 1): only rules can make red.
    _set_thresholds(own_artifact, {"budget-2": 1.5, "budget-5": 1.5}, "0.0.3")
    assert client.post("/api/v1/models/reload", headers=auth("ml-engineer")).status_code == 200
    pid = _calm_copd_patient(client, auth)
    post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "spo2", 83, NOW + timedelta(minutes=5), "spo2-low"),
        auth("integration"),
    )
    assessed = client.get(f"/api/v1/patients/{pid}/assessments", headers=auth("clinician")).json()
    assert (assessed[0]["level"], assessed[0]["level_source"]) == ("red", "rule")
    # NEWS2 ≥ 7 from the dry run on values, with the model at 0.99 but unable to decide.
    dry = client.post(
        "/api/v1/rules/evaluate",
        headers=auth("clinician"),
        json={
            "pathway": "copd",
            "values": {
                "respiratory_rate": 26,
                "spo2": 90,
                "on_oxygen": False,
                "systolic_bp": 95,
                "heart_rate": 120,
                "consciousness": "alert",
                "temperature": 38.5,
            },
            "age_years": 70,
            "model_probability": 0.99,
        },
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["level"] == "red" and dry.json()["level_source"] == "rule"


def test_reload_re_resolves_and_the_dry_run_shows_what_the_budget_buys(
    client: TestClient, auth: Callable[..., dict[str, str]], own_artifact: Path, app: Any
) -> None:
    def dry(p: float) -> dict[str, Any]:
        r = client.post(
            "/api/v1/rules/evaluate",
            headers=auth("clinician"),
            json={"pathway": "heart-failure", "values": {"heart_rate": 70}, "model_probability": p},
        )
        assert r.status_code == 200, r.text
        return r.json()

    first = dry(0.45)
    assert (first["level"], first["level_source"]) == ("yellow", "model")  # red at 0.5
    red = first["model_operating_points"]["red"]
    assert red["operating_point"] == "budget-2" and red["threshold"] == 0.5
    assert red["alerts_per_100_patient_days"] == pytest.approx(5.0)
    assert red["event_sensitivity"] == pytest.approx(0.5)
    assert "budget-3" in first["available_operating_points"]
    page = client.get("/api/v1/pathways/heart-failure", headers=auth("clinician")).json()
    assert page["model_operating_points"]["red"]["operating_point"] == "budget-2"

    _set_thresholds(own_artifact, {"budget-2": 0.4}, "0.0.4")
    reloaded = client.post("/api/v1/models/reload", headers=auth("ml-engineer"))
    assert reloaded.status_code == 200
    assert reloaded.json()["operating_points"]["heart-failure"]["budget-2"]["threshold"] == 0.4
    again = dry(0.45)
    assert (again["level"], again["model_version"]) == ("red", "0.0.4")

    # A version that lacks a point a pathway names is refused; the old one keeps serving.
    manifest = json.loads((own_artifact / "manifest.json").read_text())
    del manifest["operating_points"]["pathways"]["copd"]["points"]["budget-2"]
    manifest["version"] = "0.0.5"
    (own_artifact / "manifest.json").write_text(json.dumps(manifest))
    refused = client.post("/api/v1/models/reload", headers=auth("ml-engineer"))
    assert refused.status_code == 503
    assert "copd (red: budget-2)" in refused.json()["detail"]
    assert client.get("/api/v1/models", headers=auth("ml-engineer")).json()[0]["version"] == "0.0.4"

    # The audit trail names the versions before and after each reload.
    from service.db.tables import AuditEntry

    assert app.state.audit.flush(10)
    with app.state.sessions() as session:
        rows = session.scalars(
            select(AuditEntry.resource).where(AuditEntry.action == "model-reload")
        ).all()
    assert "model reload 0.0.1 -> 0.0.4" in rows
    assert "model reload 0.0.4 -> refused" in rows


def test_validator_knows_operating_point_names(
    client: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    doc = client.get("/api/v1/pathways/copd", headers=auth("clinician")).json()["pathway"]
    doc["triage"]["model_thresholds"]["red"] = "budget-42"
    r = client.post("/api/v1/pathways/validate", json=doc, headers=auth("clinician")).json()
    assert not r["valid"]
    assert any(
        p["path"] == "/triage/model_thresholds/red" and "budget-42" in p["message"]
        for p in r["problems"]
    )
    doc["triage"]["model_thresholds"]["red"] = "whatever"
    r = client.post("/api/v1/pathways/validate", json=doc, headers=auth("clinician")).json()
    assert not r["valid"]


def test_a_gate_override_needs_a_reason_without_identifiers_and_is_audited(
    client: TestClient, auth: Callable[..., dict[str, str]], app: Any
) -> None:
    ml = auth("ml-engineer")
    leaky = {"override_reason": "patient 15076500565 needs this model"}
    assert client.post("/api/v1/models/reload", json=leaky, headers=ml).status_code == 422
    short = {"override_reason": "why"}
    assert client.post("/api/v1/models/reload", json=short, headers=ml).status_code == 422
    reason = {"override_reason": "incident 42: roll back to the previous version"}
    assert client.post("/api/v1/models/reload", json=reason, headers=ml).status_code == 200
    from service.db.tables import AuditEntry

    assert app.state.audit.flush(10)
    with app.state.sessions() as session:
        rows = session.scalars(
            select(AuditEntry.resource).where(AuditEntry.action == "model-reload")
        ).all()
    assert any(
        r.startswith("model reload 0.0.1 -> 0.0.1 (gate override: incident 42") for r in rows
    )
