"""The feature definitions, checked against hand-computed values, and batch == single."""

from __future__ import annotations

import numpy as np
import pytest

from models.features import (
    DAY_S,
    FEATURE_INDEX,
    FEATURE_NAMES,
    HOUR_S,
    N_FEATURES,
    History,
    compute_features,
    feature_spec_hash,
)

T0 = 1_780_000_000


def features_for(rows, as_of, age=70.0):
    X, ctx = compute_features(
        History.from_rows(rows), np.array([0]), np.array([as_of]), np.array([age])
    )
    return dict(zip(FEATURE_NAMES, X[0])), ctx


def test_names_carry_units_and_are_unique():
    assert len(set(FEATURE_NAMES)) == N_FEATURES
    for name in FEATURE_NAMES:
        assert any(
            u in name
            for u in ("pct", "bpm", "per_min", "_c_", "mmhg", "kg", "score", "days", "_h", "band")
        ), name


def test_latest_baseline_and_changes_by_hand():
    rows = [(0, "spo2", T0 + d * DAY_S, v) for d, v in enumerate([95, 96, 94, 95, 96, 95, 93])]
    rows += [(0, "spo2", T0 + 6 * DAY_S + 2 * HOUR_S, 90)]
    f, ctx = features_for(rows, T0 + 6 * DAY_S + 2 * HOUR_S)
    assert f["spo2_pct_latest"] == 90
    # baseline: median of readings older than 24 h within 14 days: 95,96,94,95,96,95 -> 95
    assert f["spo2_pct_delta_baseline"] == pytest.approx(-5)
    # 1 day: last reading at or before t-24h (day 5: 95); 3 days: at or before t-72h (day 3: 95)
    assert f["spo2_pct_change_1d"] == pytest.approx(-5)
    assert f["spo2_pct_change_3d"] == pytest.approx(-5)
    assert f["heart_rate_bpm_latest"] != f["heart_rate_bpm_latest"]  # NaN: never measured
    assert ctx.row(0)["spo2"]["baseline"] == pytest.approx(95)


def test_weight_gain_over_3_days():
    rows = [(0, "weight", T0 + d * DAY_S, 80 + (0.8 * max(0, d - 4))) for d in range(8)]
    f, _ = features_for(rows, T0 + 7 * DAY_S)
    assert f["weight_kg_change_3d"] == pytest.approx(2.4)
    assert f["weight_kg_change_1d"] == pytest.approx(0.8)


def test_latest_expires_after_three_days_and_missed_days_count():
    rows = [(0, "spo2", T0 + d * DAY_S, 95) for d in range(5)]
    f, _ = features_for(rows, T0 + 8 * DAY_S)
    assert np.isnan(f["spo2_pct_latest"])
    assert f["missed_measurement_days_3d"] == 3
    assert f["hours_since_last_measurement_h"] == pytest.approx(96)


def test_readings_after_the_reference_time_are_ignored():
    rows = [(0, "spo2", T0 + d * DAY_S, 95) for d in range(5)]
    future = [*rows, (0, "spo2", T0 + 6 * DAY_S, 80)]
    a, _ = features_for(rows, T0 + 4 * DAY_S)
    b, _ = features_for(future, T0 + 4 * DAY_S)
    assert np.array_equal(np.array(list(a.values())), np.array(list(b.values())), equal_nan=True)


def test_baseline_needs_three_readings():
    f, _ = features_for([(0, "spo2", T0, 95), (0, "spo2", T0 + 2 * DAY_S, 92)], T0 + 2 * DAY_S)
    assert np.isnan(f["spo2_pct_delta_baseline"])


@pytest.mark.parametrize(
    "age, band", [(0.5, 0), (3, 1), (8, 2), (15, 3), (40, 4), (70, 5), (85, 6)]
)
def test_age_band(age, band):
    f, _ = features_for([(0, "spo2", T0, 95)], T0, age)
    assert f["age_band"] == band


def test_batch_equals_one_patient_at_a_time():
    rng = np.random.default_rng(7)
    rows = []
    channels = ["spo2", "heart_rate", "weight", "temperature", "symptom_score"]
    for p in range(40):
        for _ in range(rng.integers(0, 60)):
            rows.append(
                (
                    p,
                    str(rng.choice(channels)),
                    int(T0 + rng.integers(0, 20 * DAY_S)),
                    float(rng.normal(50, 20)),
                )
            )
    history = History.from_rows(rows)
    patients = np.repeat(np.arange(40), 3)
    times = T0 + rng.integers(0, 21 * DAY_S, len(patients))
    ages = rng.uniform(1, 90, len(patients))
    batch, _ = compute_features(history, patients, times, ages)
    for i, (p, t, a) in enumerate(zip(patients, times, ages)):
        own = History.from_rows([(0, c, s, v) for (q, c, s, v) in rows if q == p])
        single, _ = compute_features(own, np.array([0]), np.array([t]), np.array([a]))
        assert np.array_equal(batch[i], single[0], equal_nan=True), i


def test_spec_hash_is_stable_and_sensitive():
    assert feature_spec_hash() == feature_spec_hash()
    assert len(feature_spec_hash()) == 64
    assert FEATURE_INDEX["age_band"] == N_FEATURES - 1


def test_weight_and_pulse_trends_over_7_days_by_hand():
    """A least-squares slope per day; a device's constant bias does not change it."""
    weights = [80.0, 80.2, 80.4, 80.6, 80.8, 81.0, 81.2]  # +0.2 kg a day
    pulses = [70.0, 70.0, 72.0, 74.0, 76.0, 78.0, 80.0]
    rows = [(0, "weight", T0 + d * DAY_S, w) for d, w in enumerate(weights)]
    rows += [(0, "heart_rate", T0 + d * DAY_S, p) for d, p in enumerate(pulses)]
    as_of = T0 + 6 * DAY_S + HOUR_S
    f, _ = features_for(rows, as_of)
    assert f["weight_kg_slope_7d"] == pytest.approx(0.2, abs=1e-4)
    assert f["heart_rate_bpm_slope_7d"] == pytest.approx(
        np.polyfit(range(7), pulses, 1)[0], abs=1e-3
    )
    biased = [(p, ch, t, v + 0.3 if ch == "weight" else v) for p, ch, t, v in rows]
    g, _ = features_for(biased, as_of)
    assert g["weight_kg_slope_7d"] == f["weight_kg_slope_7d"]
    # Too few readings, or all within 2 days: no trend (missing, never a silent zero).
    short = [(0, "weight", T0 + h * HOUR_S, 80.0 + h) for h in (0, 10, 20)]
    h, _ = features_for(short, T0 + 21 * HOUR_S)
    assert np.isnan(h["weight_kg_slope_7d"]) and np.isnan(h["systolic_bp_mmhg_slope_7d"])


def test_swinging_temperature_is_the_sd_of_the_last_72_hours():
    temps = [(0, 36.8), (12, 38.6), (24, 37.0), (36, 38.9), (48, 37.1)]
    old = [(0, "temperature", T0 - 5 * DAY_S, 41.0)]  # outside the window
    rows = old + [(0, "temperature", T0 + h * HOUR_S, v) for h, v in temps]
    f, _ = features_for(rows, T0 + 48 * HOUR_S)
    assert f["temperature_c_sd_3d"] == pytest.approx(
        np.std([v for _, v in temps], ddof=1), abs=1e-4
    )
    one, _ = features_for([(0, "temperature", T0, 38.0)], T0 + HOUR_S)
    assert np.isnan(one["temperature_c_sd_3d"])
