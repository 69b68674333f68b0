"""Detection on the small in-test synthetic cohort (monitoring_synth): fast, no training import.

The issue's honest-detection tests on training's simulator are in test_monitoring_detection.py.
"""

from __future__ import annotations

import numpy as np
from monitoring_synth import N_CURRENT_PATIENTS, report, simulate_window

WEIGHT_FEATURES = {"weight_kg_delta_baseline", "weight_kg_change_1d", "weight_kg_change_3d"}


def test_unchanged_window_is_ok(reference, fast_config):
    result = report(reference, simulate_window(N_CURRENT_PATIENTS, seed=11), fast_config)
    assert result.verdict == "ok", result.drifted_features
    assert result.drifted_features == []
    assert not result.prediction_drift
    assert result.data_quality == []


def test_population_shift_older_and_more_heart_failure_is_drift(reference, fast_config):
    current = simulate_window(
        N_CURRENT_PATIENTS, seed=12, age_shift_years=10, pathway_weights=(0.2, 0.5, 0.15, 0.15)
    )
    result = report(reference, current, fast_config)
    assert result.verdict == "drift"
    assert "age_band" in result.drifted_features
    # The device-level features did not change: naming them would send engineers the wrong way.
    assert "spo2_pct_delta_baseline" not in result.drifted_features
    mix = result.json["pathway_mix"]
    assert mix["drifted"] and mix["current"]["heart-failure"] > mix["reference"]["heart-failure"]


def test_spo2_device_offset_minus_3_is_drift_on_spo2(reference, fast_config):
    result = report(
        reference, simulate_window(N_CURRENT_PATIENTS, seed=13, spo2_offset=-3.0), fast_config
    )
    assert result.verdict == "drift"
    assert result.drifted_features == ["spo2_pct_latest"]
    spo2 = next(f for f in result.features if f.feature == "spo2_pct_latest")
    assert spo2.strong and spo2.score is not None and spo2.score > 0.75
    assert "age_band" not in result.drifted_features


def test_scale_switching_to_pounds_is_drift_and_a_data_quality_flag(reference, fast_config):
    current = simulate_window(N_CURRENT_PATIENTS, seed=14, weight_pounds_from_day=7)
    result = report(reference, current, fast_config)
    assert result.verdict == "drift"
    assert set(result.drifted_features) & WEIGHT_FEATURES
    assert set(result.drifted_features) <= WEIGHT_FEATURES | {"respiratory_rate_per_min_latest"}
    flagged = {(f.kind, f.column) for f in result.data_quality}
    assert ("out_of_range", "weight") in flagged  # raw weights above 180 "kg"
    assert ("out_of_range", "weight_kg_delta_baseline") in flagged
    assert all(f.column.startswith("weight") for f in result.data_quality)
    text = next(f.text_en for f in result.data_quality if f.column == "weight")
    assert "Body weight" in text and "out of range" in text


def test_scale_in_pounds_from_the_start_is_still_caught(reference, fast_config):
    current = simulate_window(N_CURRENT_PATIENTS, seed=15, weight_pounds_from_day=0)
    result = report(reference, current, fast_config)
    assert result.verdict == "drift"
    assert set(result.drifted_features) & WEIGHT_FEATURES
    assert ("out_of_range", "weight") in {(f.kind, f.column) for f in result.data_quality}


def test_thresholds_that_are_too_tight_do_raise_false_alarms(reference, fast_config):
    """The false-alarm test can fail: Evidently's default 0.1 is too tight for clustered rows."""
    tight = fast_config.model_copy(update={"numeric_threshold": 0.1})
    verdicts = [
        report(reference, simulate_window(N_CURRENT_PATIENTS, seed=100 + s), tight).verdict
        for s in range(3)
    ]
    assert any(v != "ok" for v in verdicts)
    assert np.mean([v != "ok" for v in verdicts]) > 0.05
