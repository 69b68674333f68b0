"""Open Inference Protocol (KServe V2) REST: driven by tritonclient as an unmodified third-party
client against a real uvicorn server, plus the protocol's edge cases through TestClient."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

from models.features import FEATURE_NAMES, N_FEATURES
from models.runtime import OnnxRiskModel

MODEL = "handmade-test-model"  # name and version come from the artifact's manifest
VERSION = "0.0.1"


def sample_rows(n: int, seed: int = 0) -> np.ndarray:
    """Plausible feature rows, with some missing values (NaN)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 3.0, size=(n, N_FEATURES)).astype(np.float32)
    X[rng.random((n, N_FEATURES)) < 0.1] = np.nan
    return X


@pytest.fixture
def reference(artifact_dir) -> OnnxRiskModel:
    return OnnxRiskModel(artifact_dir).load()


def test_tritonclient_drives_every_v2_endpoint(live_server, auth, reference):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    # A fresh dict per call: tritonclient writes Inference-Header-Content-Length into the dict
    # it is given. Otherwise its defaults throughout (no Content-Type, binary tensors).
    token = auth("ml-engineer")["Authorization"]

    def fresh() -> dict[str, str]:
        return {"Authorization": token}

    headers = fresh()
    client = httpclient.InferenceServerClient(url=live_server.url)
    try:
        assert client.is_server_live()  # public, as orchestrators probe it
        assert client.is_server_ready()
        server = client.get_server_metadata(headers=headers)
        assert (
            server["name"] == "home-followup-triage"
            and "binary_tensor_data" in server["extensions"]
        )
        assert client.is_model_ready(MODEL, headers=headers)
        assert client.is_model_ready(MODEL, model_version=VERSION, headers=headers)

        meta = client.get_model_metadata(MODEL, headers=headers)
        assert meta["name"] == MODEL and meta["versions"] == [VERSION]
        assert meta["inputs"] == [
            {"name": "features", "datatype": "FP32", "shape": [-1, N_FEATURES]}
        ]
        assert {o["name"]: o["shape"] for o in meta["outputs"]} == {
            "probability": [-1],
            "logit": [-1],
            "contributions": [-1, N_FEATURES],
        }
        assert meta["parameters"]["feature_names"] == list(FEATURE_NAMES)

        X = sample_rows(5)
        expected = reference.predict(X)
        for binary in (False, True):  # JSON tensors, and Triton's binary extension (its default)
            tensor = httpclient.InferInput("features", list(X.shape), "FP32")
            tensor.set_data_from_numpy(X, binary_data=binary)
            wanted = [
                httpclient.InferRequestedOutput(n, binary_data=binary)
                for n in ("probability", "logit", "contributions")
            ]
            result = client.infer(
                MODEL, [tensor], outputs=wanted, headers=fresh(), request_id="req-1"
            )
            np.testing.assert_allclose(
                result.as_numpy("probability"), expected.probability, rtol=1e-12
            )
            np.testing.assert_allclose(
                result.as_numpy("contributions"), expected.contributions, rtol=1e-12
            )
            response = result.get_response()
            assert response["model_name"] == MODEL and response["model_version"] == VERSION
            assert response["id"] == "req-1"
            intercept = response["parameters"]["intercept"]
            np.testing.assert_allclose(
                intercept + result.as_numpy("contributions").sum(axis=1),
                result.as_numpy("logit"),
                atol=1e-9,
            )

        # All defaults: binary input, and no outputs named, so every output comes back binary.
        tensor = httpclient.InferInput("features", list(X.shape), "FP32")
        tensor.set_data_from_numpy(X)
        result = client.infer(MODEL, [tensor], headers=fresh(), model_version=VERSION)
        np.testing.assert_allclose(result.as_numpy("logit"), expected.logit, rtol=1e-12)

        with pytest.raises(InferenceServerException, match="unknown model"):
            client.get_model_metadata("no-such-model", headers=headers)
        with pytest.raises(InferenceServerException, match="bearer token"):
            client.get_model_metadata(MODEL)
        with pytest.raises(InferenceServerException, match="may not call"):
            client.get_model_metadata(MODEL, headers=auth("clinician"))
        with pytest.raises(InferenceServerException, match="may not call"):
            client.infer(MODEL, [tensor], headers=auth("clinician"))
        with pytest.raises(InferenceServerException, match="bearer token"):
            client.infer(MODEL, [tensor])
        with pytest.raises(InferenceServerException, match="no version"):
            client.infer(MODEL, [tensor], headers=fresh(), model_version="9")
        bad = httpclient.InferInput("features", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32), binary_data=False)
        with pytest.raises(InferenceServerException, match=rf"shape \[N, {N_FEATURES}\]"):
            client.infer(MODEL, [bad], headers=fresh())
    finally:
        client.close()


def infer(client, headers, body, name=MODEL):
    return client.post(
        f"/v2/models/{name}/infer",
        content=json.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
    )


def features_input(data, shape=None, datatype="FP32"):
    return {
        "name": "features",
        "datatype": datatype,
        "shape": shape or [1, N_FEATURES],
        "data": data,
    }


def test_nested_and_flat_data_and_nulls_give_the_same_answer(ro_client, ro_auth, reference):
    headers = ro_auth("integration")
    X = sample_rows(3, seed=1)
    nested = [[None if math.isnan(v) else float(v) for v in row] for row in X]
    flat = [v for row in nested for v in row]
    answers = []
    for data in (nested, flat):
        response = infer(
            ro_client, headers, {"id": "x", "inputs": [features_input(data, [3, N_FEATURES])]}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == "x" and [o["name"] for o in body["outputs"]] == [
            "probability",
            "logit",
            "contributions",
        ]
        answers.append(body["outputs"])
    assert answers[0] == answers[1]
    probability = next(o for o in answers[0] if o["name"] == "probability")
    assert probability["datatype"] == "FP64" and probability["shape"] == [3]
    np.testing.assert_allclose(probability["data"], reference.predict(X).probability, rtol=1e-12)
    contributions = next(o for o in answers[0] if o["name"] == "contributions")
    assert (
        contributions["shape"] == [3, N_FEATURES] and len(contributions["data"]) == 3 * N_FEATURES
    )


def test_requested_outputs_only(ro_client, ro_auth):
    body = {"inputs": [features_input([0.0] * N_FEATURES)], "outputs": [{"name": "probability"}]}
    response = infer(ro_client, ro_auth("admin"), body)
    assert response.status_code == 200
    assert [o["name"] for o in response.json()["outputs"]] == ["probability"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [features_input([0.0] * (N_FEATURES - 1))]}, f"needs {N_FEATURES}"),
        ({"inputs": [features_input([0.0] * 2 * N_FEATURES, [1, 2 * N_FEATURES])]}, "shape"),
        ({"inputs": [features_input([0.0] * N_FEATURES, [0, N_FEATURES])]}, "N >= 1"),
        ({"inputs": [features_input([0.0] * N_FEATURES, datatype="INT64")]}, "datatype FP32"),
        ({"inputs": [{**features_input([0.0] * N_FEATURES), "name": "x"}]}, "unknown input 'x'"),
        ({"inputs": [features_input(["high"] * N_FEATURES)]}, "must be numbers"),
        ({"inputs": []}, "exactly one tensor"),
        (
            {"inputs": [features_input([0.0] * N_FEATURES)], "outputs": [{"name": "shap"}]},
            "unknown output",
        ),
        ([1, 2, 3], "JSON object"),
    ],
)
def test_malformed_requests_get_400_with_the_protocol_error_shape(
    ro_client, ro_auth, body, message
):
    response = infer(ro_client, ro_auth("ml-engineer"), body)
    assert response.status_code == 400
    assert set(response.json()) == {"error"} and message in response.json()["error"]


def test_not_json_is_400(ro_client, ro_auth):
    response = ro_client.post(
        f"/v2/models/{MODEL}/infer",
        content=b"{not json",
        headers={**ro_auth("ml-engineer"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


def test_unknown_model_or_version_is_404(ro_client, ro_auth):
    headers = ro_auth("ml-engineer")
    assert ro_client.get("/v2/models/other", headers=headers).status_code == 404
    assert ro_client.get(f"/v2/models/{MODEL}/versions/9.9.9", headers=headers).status_code == 404
    response = infer(
        ro_client, headers, {"inputs": [features_input([0.0] * N_FEATURES)]}, name="other"
    )
    assert response.status_code == 404 and "unknown model 'other'" in response.json()["error"]


def test_health_is_public_the_rest_needs_the_right_role(ro_client, ro_auth):
    assert ro_client.get("/v2/health/live").json() == {"live": True}
    assert ro_client.get("/v2/health/ready").status_code == 200
    assert ro_client.get("/v2").status_code == 401
    assert ro_client.get(f"/v2/models/{MODEL}").status_code == 401
    body = {"inputs": [features_input([0.0] * N_FEATURES)]}
    assert infer(ro_client, {}, body).status_code == 401
    assert infer(ro_client, ro_auth("clinician"), body).status_code == 403
    assert infer(ro_client, ro_auth("compliance"), body).status_code == 403
    for role in ("ml-engineer", "integration", "admin"):
        assert infer(ro_client, ro_auth(role), body).status_code == 200


def test_a_large_batch_is_scored_off_the_event_loop_with_the_same_result(
    ro_client, ro_auth, reference, monkeypatch
):
    from service.api import v2

    on_loop: list[bool] = []
    run = v2._parse_and_run

    def recording(*args):
        try:  # a worker thread has no running event loop; the loop's own thread has one
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return run(*args)

    monkeypatch.setattr(v2, "_parse_and_run", recording)
    X = np.nan_to_num(sample_rows(1000, seed=2))
    body = {
        "inputs": [features_input(X.tolist(), [1000, N_FEATURES])],
        "outputs": [{"name": "probability"}],
    }
    response = infer(ro_client, ro_auth("ml-engineer"), body)
    assert response.status_code == 200
    np.testing.assert_allclose(
        response.json()["outputs"][0]["data"], reference.predict(X).probability, rtol=1e-12
    )
    small = {"inputs": [features_input([0.0] * N_FEATURES)]}
    assert infer(ro_client, ro_auth("ml-engineer"), small).status_code == 200
    # The large batch ran in a worker thread; a few rows stay inline on the loop (cheaper).
    assert on_loop == [False, True]


def test_binary_tensor_extension_round_trip(reference):
    """Triton's binary extension: JSON header, then raw little-endian tensors (both ways)."""
    from service.api.v2 import infer_response, parse_infer_request

    X = sample_rows(4, seed=3)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [4, N_FEATURES],
                    "parameters": {"binary_data_size": X.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    request = parse_infer_request(header + X.astype("<f4").tobytes(), str(len(header)))
    body, json_length = infer_response(reference, request)
    assert json_length is not None
    outputs = json.loads(body[:json_length])["outputs"]
    offset, arrays = json_length, {}
    for out in outputs:
        size = out["parameters"]["binary_data_size"]
        arrays[out["name"]] = np.frombuffer(body[offset : offset + size], "<f8").reshape(
            out["shape"]
        )
        offset += size
    expected = reference.predict(X)
    np.testing.assert_allclose(arrays["probability"], expected.probability, rtol=1e-12)
    np.testing.assert_allclose(arrays["contributions"], expected.contributions, rtol=1e-12)


def test_binary_size_must_match_the_shape():
    from service.api.v2 import parse_infer_request
    from service.errors import BadRequest

    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [2, N_FEATURES],
                    "parameters": {"binary_data_size": N_FEATURES * 4},
                }
            ]
        }
    ).encode()
    with pytest.raises(BadRequest, match="binary data"):
        parse_infer_request(header + bytes(N_FEATURES * 4), str(len(header)))


def test_inference_calls_are_audited_without_patient_data(ro_client, ro_auth):
    from sqlalchemy import select

    from service.db.tables import AuditEntry

    body = {"inputs": [features_input([0.0] * N_FEATURES)]}
    assert infer(ro_client, ro_auth("integration"), body).status_code == 200
    assert infer(ro_client, ro_auth("clinician"), body).status_code == 403
    assert ro_client.app.state.audit.flush()
    with ro_client.app.state.sessions() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.resource == "POST /v2/models/{name}/infer")
        ).all()
    assert {(r.role, r.action, r.outcome, r.patient_id) for r in rows} >= {
        ("integration", "write", 200, None),
        ("clinician", "refuse", 403, None),
    }


def test_a_cached_token_is_verified_again_after_it_expires(ro_client, monkeypatch):
    from service.api.v2 import V2InferFastPath

    fast = V2InferFastPath(app=None)
    state = ro_client.app.state
    calls = []
    real_verify = state.verifier.verify

    def counting(token):
        calls.append(token)
        return real_verify(token)

    monkeypatch.setattr(state.verifier, "verify", counting)
    from service.security.principal import Role
    from service.security.tokens import issue_dev_token

    token = issue_dev_token(state.settings, Role.ML_ENGINEER, lifetime_s=3600)
    headers = {b"authorization": f"Bearer {token}".encode()}
    for _ in range(3):
        fast._principal(state, headers)
    assert len(calls) == 1  # verified once, then served from the cache
    principal, _ = fast._tokens[token]
    fast._tokens[token] = (principal, 0.0)  # as if its exp had passed
    fast._principal(state, headers)
    assert len(calls) == 2


def test_deeply_nested_json_is_400_not_a_crash(ro_client, ro_auth):
    body = b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 28], "data": ' + (
        b"[" * 100_000 + b"1" + b"]" * 100_000 + b"}]}"
    )
    response = ro_client.post(
        f"/v2/models/{MODEL}/infer",
        content=body,
        headers={**ro_auth("ml-engineer"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "deeper" in response.json()["error"]
