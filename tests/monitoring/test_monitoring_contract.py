"""Completeness and layering: every feature and channel is covered; imports stay lazy."""

from __future__ import annotations

import subprocess
import sys

from models.features import FEATURE_NAMES, HISTORY_CHANNELS
from monitoring.config import DriftConfig
from monitoring.data import RAW_CHANNELS


def test_every_history_channel_has_an_expected_range_and_is_a_raw_channel():
    config = DriftConfig()
    assert set(HISTORY_CHANNELS) == set(config.expected_ranges) == set(RAW_CHANNELS)


def test_every_feature_is_in_the_report_with_a_method(full_report):
    assert [f.feature for f in full_report.features] == list(FEATURE_NAMES)
    assert all(f.kind in ("numeric", "categorical") for f in full_report.features)
    # A tested feature has a threshold from the null at this size; an untested one says why.
    assert all((f.score is None) == bool(f.note) for f in full_report.features)
    assert all(f.threshold > 0 for f in full_report.features if f.score is not None)


def test_importing_monitoring_loads_neither_pandas_nor_evidently():
    code = (
        "import sys\n"
        "import monitoring.alerts, monitoring.cli, monitoring.config, monitoring.data, "
        "monitoring.drift, monitoring.summary\n"
        "heavy = sorted(m for m in ('pandas', 'evidently', 'plotly', 'sklearn') "
        "if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
