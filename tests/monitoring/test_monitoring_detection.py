"""Honest detection (issue 7 §6) on training's cohort simulator, scored by a trained ONNX model.

Unchanged windows must stay quiet; an older population with more heart failure and two device
faults (SpO2 3 points low, a scale switching to pounds) must be called drift, naming the right
features. Default DriftConfig thresholds throughout.
"""

from __future__ import annotations

import pytest
from monitoring_sim import simulated_window
from monitoring_synth import report

N_PATIENTS = 300  # ~5 900 scored rows over 21 days
WEIGHT_FEATURES = {"weight_kg_delta_baseline", "weight_kg_change_1d", "weight_kg_change_3d"}


def test_unchanged_window_is_ok(sim_reference, tiny_model, fast_config):
    result = report(sim_reference, simulated_window(tiny_model, N_PATIENTS, seed=1), fast_config)
    assert result.verdict == "ok", [(f.feature, f.score) for f in result.features if f.drifted]
    assert result.drifted_features == []
    assert not result.prediction_drift
    assert result.data_quality == []


def test_older_population_with_more_heart_failure_is_drift(sim_reference, tiny_model, fast_config):
    current = simulated_window(tiny_model, N_PATIENTS, seed=2, scenario="population")
    result = report(sim_reference, current, fast_config)
    assert result.verdict == "drift"
    assert "age_band" in result.drifted_features
    # Latest vitals move with the case mix (more COPD/heart failure, no children), but no
    # device changed: the weight-change features, which a scale fault would move, stay put.
    assert not WEIGHT_FEATURES & set(result.drifted_features)
    assert result.data_quality == [] or all(f.kind == "missing" for f in result.data_quality)
    mix = result.json["pathway_mix"]
    assert mix["drifted"]
    assert mix["current"]["heart-failure"] > 2 * mix["reference"]["heart-failure"]


def test_pulse_oximeter_3_points_low_is_drift_on_spo2_only(sim_reference, tiny_model, fast_config):
    current = simulated_window(tiny_model, N_PATIENTS, seed=3, scenario="device-spo2")
    result = report(sim_reference, current, fast_config)
    assert result.verdict == "drift"
    assert result.drifted_features == ["spo2_pct_latest"]
    assert next(f for f in result.features if f.feature == "spo2_pct_latest").strong


def test_scale_switching_to_pounds_is_drift_and_flagged(sim_reference, tiny_model, fast_config):
    current = simulated_window(tiny_model, N_PATIENTS, seed=4, scenario="device-weight")
    result = report(sim_reference, current, fast_config)
    assert result.verdict == "drift"
    assert set(result.drifted_features) == WEIGHT_FEATURES
    flagged = {(f.kind, f.column) for f in result.data_quality}
    assert ("out_of_range", "weight") in flagged
    assert ("out_of_range", "weight_kg_delta_baseline") in flagged
    assert {f.column for f in result.data_quality} <= {"weight"} | WEIGHT_FEATURES


@pytest.mark.slow
def test_false_alarm_rate_over_20_unchanged_seeds_is_at_most_5_percent(
    sim_reference, tiny_model, fast_config
):
    """Any verdict but 'ok' on an unchanged window counts as a false alarm."""
    verdicts = {
        seed: report(
            sim_reference, simulated_window(tiny_model, N_PATIENTS, seed=100 + seed), fast_config
        ).verdict
        for seed in range(20)
    }
    false_alarms = [seed for seed, verdict in verdicts.items() if verdict != "ok"]
    assert len(false_alarms) / len(verdicts) <= 0.05, verdicts
    assert "drift" not in verdicts.values()
