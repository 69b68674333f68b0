"""ONNX runtime: exact contributions, parity with numpy, and refusal of mismatched artifacts."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from models.additive import StepFunctionModel
from models.artifact import ArtifactError
from models.features import FEATURE_NAMES, N_FEATURES
from models.runtime import OnnxRiskModel


def random_model(seed: int) -> StepFunctionModel:
    rng = np.random.default_rng(seed)
    thresholds = [np.sort(rng.normal(size=rng.integers(0, 9))) for _ in range(N_FEATURES)]
    return StepFunctionModel(
        FEATURE_NAMES,
        thresholds,
        [rng.normal(size=len(t) + 1) for t in thresholds],
        rng.normal(size=N_FEATURES),
        float(rng.normal()),
    )


def test_intercept_plus_contributions_equals_logit_on_many_rows(artifact_dir):
    model = OnnxRiskModel(artifact_dir).load()
    rng = np.random.default_rng(0)
    X = rng.normal(0, 5, size=(5000, N_FEATURES)).astype(np.float32)
    X[rng.random(X.shape) < 0.3] = np.nan
    p = model.predict(X)
    assert np.max(np.abs(p.intercept + p.contributions.sum(axis=1) - p.logit)) < 1e-5
    assert np.allclose(p.probability, 1 / (1 + np.exp(-p.logit)), atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_onnx_matches_numpy_reference(tmp_path, seed):
    from models.artifact import Manifest
    from models.features import feature_spec_hash

    reference = random_model(seed)
    data = reference.to_onnx()
    (tmp_path / "model.onnx").write_bytes(data)
    Manifest(
        "r",
        "1",
        "additive",
        hashlib.sha256(data).hexdigest(),
        feature_spec_hash(),
        list(FEATURE_NAMES),
        reference.intercept,
        "t",
    ).write(tmp_path)
    rng = np.random.default_rng(seed + 100)
    X = rng.normal(size=(2000, N_FEATURES)).astype(np.float32)
    X[rng.random(X.shape) < 0.2] = np.nan
    onnx = OnnxRiskModel(tmp_path).load().predict(X)
    assert np.max(np.abs(onnx.probability - reference.predict_proba(X))) <= 1e-5
    assert np.max(np.abs(onnx.contributions - reference.contributions(X))) <= 1e-9


def test_serialisation_is_deterministic():
    assert random_model(3).to_onnx() == random_model(3).to_onnx()


def test_centring_and_calibration_keep_the_model_additive():
    model = random_model(1)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, N_FEATURES))
    centred = model.centred(X)
    assert np.allclose(centred.logit(X), model.logit(X))
    assert np.allclose(centred.contributions(X).mean(axis=0), 0, atol=1e-12)
    calibrated = model.affine(0.5, -1.0)
    assert np.allclose(calibrated.logit(X), 0.5 * model.logit(X) - 1.0)


def copy_artifact(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_refuses_a_changed_model_file(artifact_dir, tmp_path):
    folder = copy_artifact(artifact_dir, tmp_path / "a")
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        OnnxRiskModel(folder).load()


def test_refuses_another_feature_spec(artifact_dir, tmp_path):
    folder = copy_artifact(artifact_dir, tmp_path / "b")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["feature_spec_hash"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="feature spec"):
        OnnxRiskModel(folder).load()


def test_refuses_a_missing_manifest(tmp_path):
    with pytest.raises(ArtifactError, match=r"manifest\.json"):
        OnnxRiskModel(tmp_path).load()
