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
    # The mix changed too: a note, never drift by itself (the reference is reweighted to it).
    assert mix["changed"] and not mix["drifted"]
    assert mix["current"]["heart-failure"] > mix["reference"]["heart-failure"]
    assert result.likely_kind == "population"


def test_spo2_device_offset_minus_3_is_drift_on_spo2(reference, fast_config):
    result = report(
        reference, simulate_window(N_CURRENT_PATIENTS, seed=13, spo2_offset=-3.0), fast_config
    )
    assert result.verdict == "drift"
    assert result.drifted_features == ["spo2_pct_latest"]
    spo2 = next(f for f in result.features if f.feature == "spo2_pct_latest")
    assert spo2.effect == "large" and spo2.score is not None and spo2.score > 0.75
    assert result.likely_kind == "device-or-unit"
    assert "age_band" not in result.drifted_features


def test_scale_switching_to_pounds_is_drift_and_a_data_quality_flag(reference, fast_config):
    current = simulate_window(N_CURRENT_PATIENTS, seed=14, weight_pounds_from_day=7)
    result = report(reference, current, fast_config)
    assert result.verdict == "drift"
    assert set(result.drifted_features) & WEIGHT_FEATURES
    assert result.likely_kind == "device-or-unit"
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


def test_thresholds_know_that_rows_of_one_patient_are_not_independent(reference, fast_config):
    """The false-alarm guard can fail: counting each patient's rows as independent does.

    The same unchanged window with every row repeated ten times holds no more information. Its
    patient ids let the thresholds see that (design effect) and the verdict stays ok; without
    them ten times the rows look like ten times the evidence and chance wiggles become drift.
    """
    current = simulate_window(N_CURRENT_PATIENTS, seed=101)
    repeated = current.take(np.repeat(np.arange(len(current)), 10))
    assert report(reference, repeated, fast_config).verdict == "ok"
    repeated.patient = None
    no_floor = fast_config.model_copy(
        update={"min_effect_numeric": 0.001, "min_effect_categorical": 0.001}
    )
    assert report(reference, repeated, no_floor).verdict != "ok"
