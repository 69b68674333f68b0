"""Health, readiness, metrics, startup refusal on a bad artifact, and hot model reload."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from models.artifact import ArtifactError


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"model": "ok", "database": "ok"}


def test_readyz_is_503_when_the_database_is_unreachable(make_settings, artifact_dir, tmp_path):
    from service.app import create_app
    from tests.helpers import migrate_test_database as migrate

    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'ok.db'}")
    migrate(settings.resolved_database_url)
    with TestClient(create_app(settings)) as c:
        c.app.state.engine.dispose()
        c.app.state.engine = __import__("sqlalchemy").create_engine(
            "postgresql+psycopg://nobody@127.0.0.1:1/none"
        )
        response = c.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")


def test_service_refuses_to_start_on_a_tampered_artifact(
    make_settings, artifact_dir, tmp_path, database_url
):
    from service.app import create_app

    folder = tmp_path / "tampered"
    shutil.copytree(artifact_dir, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["feature_spec_hash"] = "f" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with (
        pytest.raises(ArtifactError, match="feature spec"),
        TestClient(create_app(make_settings(database_url=database_url, model_dir=folder))),
    ):
        pass


def test_metrics_are_prometheus_text(client, auth):
    client.get("/healthz")
    client.get("/api/v1/worklist")  # a 401 counts as an error by type
    text = client.get("/metrics").text
    assert (
        'triage_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz"'
        in text
    )
    assert 'triage_errors_total{status="401",type="login"}' in text
    assert 'triage_model_info{name="handmade-test-model",version="0.0.1"} 1.0' in text


def test_models_endpoint_says_synthetic(client, auth):
    body = client.get("/api/v1/models", headers=auth("ml-engineer")).json()
    assert body[0]["version"] == "0.0.1" and body[0]["synthetic_training_data"] is True


def test_reload_swaps_the_model_and_in_flight_requests_keep_the_old_one(client, auth, tmp_path):
    import numpy as np

    from models.features import N_FEATURES
    from tests.helpers import build_handmade_artifact

    registry = client.app.state.models
    in_flight = registry.current()  # what a request in progress holds
    new_folder = build_handmade_artifact(tmp_path / "next")
    manifest = json.loads((new_folder / "manifest.json").read_text())
    manifest["version"] = "0.0.2"
    (new_folder / "manifest.json").write_text(json.dumps(manifest))
    registry.settings.model_dir = new_folder
    response = client.post("/api/v1/models/reload", headers=auth("ml-engineer"))
    assert response.status_code == 200 and response.json()["version"] == "0.0.2"
    assert in_flight.model.version == "0.0.1"
    assert in_flight.model.predict(np.zeros((1, N_FEATURES))).probability.shape == (1,)
    assert registry.current().model.version == "0.0.2"


def test_failed_reload_keeps_the_old_model(client, auth, tmp_path):
    client.app.state.models.settings.model_dir = tmp_path / "empty"
    (tmp_path / "empty").mkdir()
    response = client.post("/api/v1/models/reload", headers=auth("ml-engineer"))
    assert response.status_code == 503
    assert "previous model still serving" in response.json()["detail"]
    assert client.get("/readyz").status_code == 200


def test_migrate_creates_the_var_folder_on_a_fresh_machine(tmp_path):
    from service.db.engine import migrate

    url = f"sqlite:///{tmp_path / 'fresh' / 'var' / 'triage.db'}"
    migrate(url)
    assert (tmp_path / "fresh" / "var" / "triage.db").is_file()
