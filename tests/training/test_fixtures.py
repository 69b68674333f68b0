"""The tiny artifact other teams' tests build on."""

import numpy as np

from models.artifact import MANIFEST_FILE, MODEL_FILE, REFERENCE_FILE, Manifest
from models.runtime import OnnxRiskModel
from training.fixtures import build_tiny_artifact


def test_tiny_artifact_is_complete_loadable_and_deterministic(tmp_path):
    first = build_tiny_artifact(tmp_path / "a", seed=3)
    second = build_tiny_artifact(tmp_path / "b", seed=3)
    for name in (MODEL_FILE, MANIFEST_FILE, REFERENCE_FILE):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    model = OnnxRiskModel(first).load()
    assert model.ready and model.version == "tiny-3"
    reference = np.load(first / REFERENCE_FILE)
    prediction = model.predict(reference["features"])
    np.testing.assert_allclose(prediction.probability, reference["probability"], atol=1e-6)
    np.testing.assert_allclose(
        prediction.intercept + prediction.contributions.sum(axis=1), prediction.logit, atol=1e-9
    )
    manifest = Manifest.read(first)
    assert manifest.training_data["synthetic"] is True
    assert 0 < manifest.extra["alert_threshold"] <= manifest.extra["high_threshold"] < 1
