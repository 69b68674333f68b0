"""Honest detection on training's cohort simulator, rows built by the service's patient-day
definition, against the model's training sample and against the site's own baseline.

Unchanged windows stay quiet; an older population with more heart failure is called a change
of population; a pulse oximeter type reading 3 points low and a scale switching to pounds are
called drift of that measurement, of the kind "device or unit". Default DriftConfig throughout.
"""

from __future__ import annotations

from monitoring_sim import baseline_and_window, simulated_window, window_of
from monitoring_synth import report

N_PATIENTS = 200
WEIGHT_FEATURES = {"weight_kg_delta_baseline", "weight_kg_change_1d", "weight_kg_change_3d"}


def _local(baseline, window, fast_config):
    return report(
        baseline,
        window,
        fast_config,
        **window_of(window),
        reference_kind="local-baseline",
        reference_window=tuple(window_of(baseline).values()),
    )


def test_unchanged_window_is_ok_against_the_training_sample(
    shipped_reference, shipped_model, fast_config
):
    current = simulated_window(shipped_model, N_PATIENTS, seed=1)
    result = report(shipped_reference, current, fast_config, **window_of(current))
    assert result.verdict == "ok", [
        (f.feature, f.score, f.threshold) for f in result.features if f.drifted
    ]
    assert result.drifted_features == [] and not result.prediction_drift
    assert result.json["window"]["patients"] >= 100


def test_older_population_with_more_heart_failure_is_a_population_change(
    shipped_reference, shipped_model, fast_config
):
    current = simulated_window(shipped_model, N_PATIENTS, seed=2, scenario="population")
    result = report(shipped_reference, current, fast_config, **window_of(current))
    assert result.verdict == "drift"
    assert "age_band" in result.drifted_features
    assert result.likely_kind == "population"
    mix = result.json["pathway_mix"]
    assert mix["changed"] and not mix["drifted"]  # the mix is a note; age made it drift
    assert mix["current"]["heart-failure"] > 2 * mix["reference"]["heart-failure"]


def test_scale_switching_to_pounds_is_device_drift_and_flagged(shipped_model, fast_config):
    baseline, window = baseline_and_window(shipped_model, N_PATIENTS, 4, "device-weight")
    result = _local(baseline, window, fast_config)
    assert result.verdict == "drift" and result.severity == "high"
    assert set(result.drifted_features) & WEIGHT_FEATURES
    assert result.likely_kind == "device-or-unit"
    flagged = {(f.kind, f.column) for f in result.data_quality}
    assert ("out_of_range", "weight") in flagged


def test_falling_adherence_is_named_adherence(shipped_model, fast_config):
    baseline, window = baseline_and_window(shipped_model, N_PATIENTS, 5, "adherence")
    result = _local(baseline, window, fast_config)
    assert result.verdict in ("warning", "drift")
    assert {"missed_measurement_days_3d", "hours_since_last_measurement_h"} & set(
        result.drifted_features
    )
    assert result.likely_kind == "adherence", result.drifted_features
