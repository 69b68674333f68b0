"""Fixtures: a reference sample and current windows from the synthetic helper (monitoring_synth)."""

from __future__ import annotations

import pytest
from monitoring_synth import N_CURRENT_PATIENTS, N_REFERENCE_PATIENTS, report, simulate_window

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
