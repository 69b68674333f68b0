"""TRIAGE_INFERENCE_URL: scoring on an external V2 endpoint (Triton in production). Here our own
/v2, served by uvicorn on a real socket, stands in for Triton."""

from __future__ import annotations

import shutil
import socket
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from models.artifact import ArtifactError, Manifest
from models.features import N_FEATURES
from models.runtime import OnnxRiskModel
from service.app import create_app
from service.db.tables import Assessment
from service.errors import ModelNotReady
from service.remote_model import RemoteV2RiskModel
from tests.helpers import enrol, migrate_test_database, observation, post_fhir


def _rows(n: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    X = rng.normal(0.0, 3.0, size=(n, N_FEATURES)).astype(np.float32)
    X[rng.random(X.shape) < 0.15] = np.nan
    return X


def _token(auth) -> str:
    return auth("ml-engineer")["Authorization"].removeprefix("Bearer ")


def test_remote_scores_and_contributions_equal_the_in_process_model(
    live_server, auth, artifact_dir
):
    remote = RemoteV2RiskModel(
        artifact_dir, f"http://{live_server.url}", timeout_s=5, token=_token(auth)
    ).load()
    local = OnnxRiskModel(artifact_dir).load()
    X = _rows(40)
    ours, theirs = local.predict(X), remote.predict(X)
    assert remote.ready and remote.version == local.version
    for name in ("probability", "logit", "contributions"):
        np.testing.assert_array_equal(getattr(theirs, name), getattr(ours, name))
    # The explanation's promise holds across the wire: intercept + contributions = logit.
    np.testing.assert_allclose(
        theirs.intercept + theirs.contributions.sum(axis=1), theirs.logit, atol=1e-5
    )


def test_the_service_scores_through_the_endpoint(live_server, auth, make_settings, tmp_path):
    # Same var folder, so the development tokens verify on both apps; another database.
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'remote.db'}",
        inference_url=f"http://{live_server.url}",
        inference_token=_token(auth),
    )
    migrate_test_database(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        assert isinstance(client.app.state.models.current().model, RemoteV2RiskModel)
        patient = enrol(client, auth("clinician"))
        when = datetime.now(UTC) - timedelta(hours=1)
        obs = observation(patient["id"], "spo2", 86, when, "remote-1")
        response = post_fhir(client, "/fhir/Observation", obs, auth("integration"))
        assert response.status_code == 201, response.text
        with client.app.state.sessions() as session:
            assessment = session.scalars(select(Assessment)).one()
        local = OnnxRiskModel(settings.model_dir).load()
        features = np.array([[np.nan if v is None else v for v in assessment.features]])
        expected = local.predict(features.astype(np.float32)).probability[0]
        assert assessment.probability == pytest.approx(float(expected), abs=1e-12)


def test_a_silent_endpoint_times_out_as_model_not_ready(artifact_dir):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    try:
        with pytest.raises(ModelNotReady, match="unreachable"):
            RemoteV2RiskModel(artifact_dir, f"http://127.0.0.1:{port}", timeout_s=0.3).load()
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def test_an_endpoint_serving_another_model_is_refused(live_server, auth, tmp_path, artifact_dir):
    other = tmp_path / "other"
    shutil.copytree(artifact_dir, other)
    manifest = Manifest.read(other)
    manifest.version = "some-other-version"
    manifest.write(other)
    with pytest.raises(ArtifactError, match="not some-other-version"):
        RemoteV2RiskModel(
            other, f"http://{live_server.url}", timeout_s=5, token=_token(auth)
        ).load()
