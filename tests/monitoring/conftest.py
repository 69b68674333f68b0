"""Fixtures: a reference sample and current windows from the synthetic helper (monitoring_synth)."""

from __future__ import annotations

from pathlib import Path

import pytest
from monitoring_synth import N_CURRENT_PATIENTS, N_REFERENCE_PATIENTS, report, simulate_window

from models.runtime import OnnxRiskModel
from monitoring.config import DriftConfig
from monitoring.data import MonitoringFrame
from monitoring.drift import DriftReportResult


@pytest.fixture(scope="session")
def reference() -> MonitoringFrame:
    return simulate_window(N_REFERENCE_PATIENTS, seed=1000)


@pytest.fixture(scope="session")
def fast_config() -> DriftConfig:
    """The default thresholds, without HTML or slices (the 20-seed loop)."""
    return DriftConfig(render_html=False, slice_by=())


@pytest.fixture(scope="session")
def full_report(reference: MonitoringFrame) -> DriftReportResult:
    """One report with everything on: HTML, slices and outcomes."""
    return report(reference, simulate_window(N_CURRENT_PATIENTS, seed=5), DriftConfig())


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """training's tiny trained model artifact (model.onnx + manifest + reference.npz)."""
    from training.fixtures import build_tiny_artifact

    return build_tiny_artifact(tmp_path_factory.mktemp("tiny-artifact"))


@pytest.fixture(scope="session")
def tiny_model(tiny_artifact: Path) -> OnnxRiskModel:
    return OnnxRiskModel(tiny_artifact).load()


@pytest.fixture(scope="session")
def shipped_model() -> OnnxRiskModel:
    """The shipped model: its reference sample is a 90-day simulated follow-up, like the
    simulated windows the detection tests build."""
    from models.artifact import SHIPPED_ARTIFACT_DIR

    return OnnxRiskModel(SHIPPED_ARTIFACT_DIR).load()


@pytest.fixture(scope="session")
def shipped_reference(shipped_model: OnnxRiskModel) -> MonitoringFrame:
    """The shipped training sample, scored by the shipped model (as the service does)."""
    from models.artifact import SHIPPED_ARTIFACT_DIR
    from monitoring.data import load_reference

    frame = load_reference(SHIPPED_ARTIFACT_DIR)
    frame.probability = shipped_model.predict(frame.X).probability
    return frame
