"""The shipped model artifact: its reference.npz loads, and a report against it works end to end."""

from __future__ import annotations

import numpy as np
import pytest
from monitoring_sim import simulated_window, window_of
from monitoring_synth import report

from models.artifact import SHIPPED_ARTIFACT_DIR
from models.features import N_FEATURES
from models.runtime import OnnxRiskModel
from monitoring.data import load_reference, reference_hash


@pytest.fixture(scope="module")
def shipped():
    return OnnxRiskModel(SHIPPED_ARTIFACT_DIR).load(), load_reference(SHIPPED_ARTIFACT_DIR)


def test_shipped_reference_matches_the_feature_vector(shipped):
    _, reference = shipped
    assert reference.X.shape[1] == N_FEATURES and len(reference) >= 1000
    assert np.all((reference.probability >= 0) & (reference.probability <= 1))
    assert set(np.unique(reference.outcome).tolist()) <= {0.0, 1.0}
    assert reference_hash(load_reference(SHIPPED_ARTIFACT_DIR)) == reference_hash(reference)


def test_spo2_fault_against_the_shipped_reference(shipped, fast_config):
    """The shipped training sample against windows built the service's way, 150 patients."""
    model, reference = shipped
    reference.probability = model.predict(reference.X).probability
    clean = simulated_window(model, 150, seed=3)
    faulty = simulated_window(model, 150, seed=3, scenario="device-spo2")
    assert report(reference, clean, fast_config, **window_of(clean)).verdict == "ok"
    result = report(reference, faulty, fast_config, **window_of(faulty))
    assert result.verdict == "drift"
    assert "spo2_pct_latest" in result.drifted_features
    assert result.likely_kind == "device-or-unit"
