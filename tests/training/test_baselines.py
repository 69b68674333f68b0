"""Rule baselines: NEWS2 by the chart (checked against the rule engine), weight and vitals."""

import numpy as np
import pytest

from training.baselines import (
    SINGLE_VITAL_RULES,
    baseline_scores,
    latest_values,
    news2,
    news2_rule_engine,
)


def _values(**kw):
    base = {
        "respiratory_rate": 18.0,
        "spo2": 95.0,
        "on_oxygen": 0.0,
        "systolic_bp": 120.0,
        "heart_rate": 80.0,
        "consciousness": 0.0,
        "temperature": 37.0,
    }
    base.update(kw)
    return {k: np.array([v], dtype=float) for k, v in base.items()}


@pytest.mark.parametrize(
    ("kw", "scale2", "expected"),
    [
        ({}, False, 1),  # the rules dry-run example: SpO2 95 scores 1
        ({"spo2": 91, "heart_rate": 131, "respiratory_rate": 25}, False, 9),
        ({"temperature": 39.1, "systolic_bp": 90, "consciousness": 1.0}, False, 1 + 2 + 3 + 3),
        ({"spo2": 90, "on_oxygen": 1.0}, True, 0 + 2),  # scale 2: 88–92 on oxygen scores 0
        ({"spo2": 97, "on_oxygen": 1.0}, True, 3 + 2),  # scale 2: ≥97 on oxygen scores 3
        ({"spo2": float("nan"), "respiratory_rate": float("nan")}, False, 0),  # not measured
    ],
)
def test_news2_chart(kw, scale2, expected):
    assert news2(_values(**kw), np.array([scale2]))[0] == expected


def test_own_news2_equals_the_rule_engine_on_a_cohort(small_cohort, small_dataset):
    _, _, meta = small_dataset
    times = {}
    values = latest_values(
        small_cohort, meta["patient"].to_numpy(), meta["time_s"].to_numpy(), times_out=times
    )
    scale2 = np.array([p.hypercapnic for p in small_cohort.patients])[meta["patient"]]
    engine = news2_rule_engine(
        values, times, meta["time_s"].to_numpy(), meta["age_years"].to_numpy(), scale2
    )
    assert engine is not None, "models/rules is part of the repository"
    np.testing.assert_array_equal(engine, news2(values, scale2))
    assert engine.max() >= 5


def test_baseline_scores_cover_every_rule(small_cohort, small_dataset):
    X, y, meta = small_dataset
    rules = baseline_scores(small_cohort, X, meta)
    assert rules.news2_source.startswith("models/rules")
    expected = {
        "NEWS2 ≥ 5",
        "Weight gain > 2 kg in 3 days",
        "Any single-vital threshold",
        *(r.name for r in SINGLE_VITAL_RULES),
    }
    assert set(rules.scores) == set(rules.alerts) == expected
    weight = rules.applies["Weight gain > 2 kg in 3 days"]
    assert set(meta["pathway"][weight]) == {"heart-failure"}
    fever = rules.alerts["Temperature ≥ 38.0 °C"]
    assert fever.any() and y[fever].mean() > y.mean()  # fever is a real, if weak, signal
