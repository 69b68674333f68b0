"""`triage export-triton`: a Triton model repository whose config is the ONNX graph's own, and
whose model answers as our /v2 endpoint does."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from models.features import N_FEATURES
from service.triton_export import ONNX_TO_TRITON, export_triton


def _parse_tensors(config: str, section: str) -> list[dict[str, object]]:
    """The `input [...]` or `output [...]` entries of a config.pbtxt (the subset we write)."""
    block = re.search(rf"^{section} \[\n(.*?)\n\]", config, re.S | re.M)
    assert block, f"no {section} section"
    tensors = []
    for entry in re.findall(r"\{(.*?)\n  \}", block.group(1), re.S):
        dims = [int(d) for d in re.search(r"dims: \[ ([^\]]*) \]", entry).group(1).split(", ")]
        tensors.append(
            {
                "name": re.search(r'name: "([^"]+)"', entry).group(1),
                "data_type": re.search(r"data_type: (\w+)", entry).group(1),
                "dims": dims,
                "reshaped": "reshape: { shape: [ ] }" in entry,
            }
        )
    return tensors


def _graph_tensors(path) -> dict[str, list[dict[str, object]]]:
    graph = onnx.load(str(path)).graph
    out: dict[str, list[dict[str, object]]] = {}
    for section, values in (("input", graph.input), ("output", graph.output)):
        out[section] = [
            {
                "name": v.name,
                "data_type": ONNX_TO_TRITON[v.type.tensor_type.elem_type],
                "shape": [d.dim_value or -1 for d in v.type.tensor_type.shape.dim],
            }
            for v in values
        ]
    return out


@pytest.fixture
def exported(tmp_path, artifact_dir):
    model_dir = export_triton(artifact_dir, tmp_path / "repo", triton_version=3)
    return tmp_path / "repo", model_dir


def test_config_is_read_from_the_graph(exported, artifact_dir):
    _, model_dir = exported
    config = (model_dir / "config.pbtxt").read_text()
    assert (model_dir / "3" / "model.onnx").read_bytes() == (
        artifact_dir / "model.onnx"
    ).read_bytes()
    assert 'platform: "onnxruntime_onnx"' in config
    assert re.search(r"^max_batch_size: [1-9]\d*$", config, re.M)
    graph = _graph_tensors(model_dir / "3" / "model.onnx")
    for section in ("input", "output"):
        written = _parse_tensors(config, section)
        assert [t["name"] for t in written] == [t["name"] for t in graph[section]]
        for w, g in zip(written, graph[section], strict=True):
            assert w["data_type"] == g["data_type"]
            assert g["shape"][0] == -1  # the batch dimension, which Triton leaves out
            expected = g["shape"][1:] or [1]
            assert w["dims"] == expected and w["reshaped"] == (g["shape"][1:] == [])
    assert _parse_tensors(config, "input")[0]["dims"] == [N_FEATURES]


def test_the_inference_service_serves_the_repository_over_v2(exported):
    repo, _ = exported
    service = yaml.safe_load((repo / "inference-service.yaml").read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["kind"] == "InferenceService"
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "onnx" and model["protocolVersion"] == "v2"
    assert model["runtime"] == "kserve-tritonserver" and model["storageUri"]


def test_exported_model_answers_as_our_v2_endpoint(exported, client, auth):
    _, model_dir = exported
    rng = np.random.default_rng(5)
    X = rng.normal(0.0, 3.0, size=(6, N_FEATURES)).astype(np.float32)
    X[0, :4] = np.nan  # missing values take the model's own bins on both sides
    body = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP32",
                "shape": [6, N_FEATURES],
                "data": [None if np.isnan(v) else float(v) for v in X.ravel()],
            }
        ]
    }
    name = model_dir.name
    response = client.post(
        f"/v2/models/{name}/infer",
        content=json.dumps(body),
        headers={**auth("ml-engineer"), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    ours = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}
    session = ort.InferenceSession(str(model_dir / "3" / "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    theirs = dict(zip(names, session.run(names, {"features": X}), strict=True))
    assert set(ours) <= set(theirs) and "probability" in ours
    for key, value in ours.items():
        np.testing.assert_allclose(value, theirs[key], rtol=1e-12, atol=1e-12)


def test_version_must_be_a_positive_integer(tmp_path, artifact_dir):
    with pytest.raises(ValueError, match="positive integers"):
        export_triton(artifact_dir, tmp_path / "repo", triton_version=0)
