"""Behaviour of the shipped model (trained on synthetic data): invariance, direction, minimum
functionality, and exact additive explanations."""

import itertools

import numpy as np
import pytest

from models.artifact import SHIPPED_ARTIFACT_DIR, Manifest
from models.features import DAY_S, FEATURE_INDEX, HOUR_S, History, compute_features
from models.runtime import OnnxRiskModel

NOW_S = 1_800_000_000  # a fixed reference time
ENROLLED_S = NOW_S - 30 * DAY_S


@pytest.fixture(scope="module")
def model():
    return OnnxRiskModel(SHIPPED_ARTIFACT_DIR).load()


def _history(days: dict[str, list[float]], extra: list[tuple[str, int, float]] = ()) -> History:
    """Daily morning readings ending today (last value = today), plus extra rows."""
    rows = []
    for channel, values in days.items():
        for i, v in enumerate(values):
            t = NOW_S - (len(values) - 1 - i) * DAY_S - 2 * HOUR_S
            rows.append((0, channel, t, v))
    rows += [(0, ch, t, v) for ch, t, v in extra]
    return History.from_rows(rows)


def _score(model, history: History, age_years: float = 72.0) -> float:
    X, _ = compute_features(
        history,
        np.array([0]),
        np.array([NOW_S]),
        np.array([age_years]),
        first_reading_s=np.array([ENROLLED_S]),
    )
    return float(model.predict(X).probability[0])


def _copd(spo2_today=94.0, hr_today=82.0, rr_today=18.0, temp_today=36.8, symptom_today=3.0, n=12):
    return {
        "spo2": [94.0] * (n - 1) + [spo2_today],
        "heart_rate": [82.0] * (n - 1) + [hr_today],
        "respiratory_rate": [18.0] * (n - 1) + [rr_today],
        "temperature": [36.8] * (n - 1) + [temp_today],
        "symptom_score": [3.0] * (n - 1) + [symptom_today],
    }


def test_shipped_artifact_is_complete_and_small():
    names = {p.name for p in SHIPPED_ARTIFACT_DIR.iterdir()}
    assert {"model.onnx", "manifest.json", "model_card.md", "reference.npz"} <= names
    assert sum(p.stat().st_size for p in SHIPPED_ARTIFACT_DIR.iterdir()) < 3_000_000
    manifest = Manifest.read(SHIPPED_ARTIFACT_DIR)
    assert manifest.training_data["synthetic"] is True
    assert manifest.metrics["onnx_max_abs_diff"] <= 1e-5


def test_invariance_sex_is_not_an_input_and_old_readings_do_not_count(model):
    base = _history(_copd())
    # A reading 20 days back lies outside every window (14-day baseline, 7-day change).
    old = _history(
        _copd(),
        extra=[("spo2", NOW_S - 20 * DAY_S, 80.0), ("heart_rate", NOW_S - 20 * DAY_S, 140.0)],
    )
    assert _score(model, old) == _score(model, base)
    # Sex never reaches the feature vector: the same history scores the same for anyone.
    assert "sex" not in " ".join(Manifest.read(SHIPPED_ARTIFACT_DIR).feature_names)
    # Duplicated readings at the same instant (a re-send) change nothing either.
    dup = _history(_copd(), extra=[("spo2", NOW_S - 2 * HOUR_S, 94.0)])
    assert _score(model, dup) == pytest.approx(_score(model, base), abs=1e-12)


def test_direction_lower_spo2_higher_risk(model):
    scores = [_score(model, _history(_copd(spo2_today=s))) for s in range(97, 79, -1)]
    assert all(b >= a for a, b in itertools.pairwise(scores))  # never lower as SpO2 falls
    assert scores[-1] > 2 * scores[0]


@pytest.mark.parametrize("feature", ["heart_rate", "temperature", "symptom_score"])
def test_direction_rises_raise_risk(model, feature):
    kwargs = {
        "heart_rate": ("hr_today", 82, 115),
        "temperature": ("temp_today", 36.8, 38.9),
        "symptom_score": ("symptom_today", 3, 9),
    }[feature]
    low = _score(model, _history(_copd(**{kwargs[0]: kwargs[1]})))
    high = _score(model, _history(_copd(**{kwargs[0]: kwargs[2]})))
    assert high > low


def test_minimum_functionality_textbook_exacerbation_is_high(model):
    manifest = Manifest.read(SHIPPED_ARTIFACT_DIR)
    stable = _score(model, _history(_copd()))
    days = _copd(n=12)
    # Three days of worsening: falling SpO2, rising pulse, breathing and symptoms, fever.
    days["spo2"][-3:] = [91, 89, 87]
    days["heart_rate"][-3:] = [92, 100, 108]
    days["respiratory_rate"][-3:] = [21, 24, 27]
    days["temperature"][-3:] = [37.4, 37.9, 38.3]
    days["symptom_score"][-3:] = [5, 7, 9]
    sick = _score(model, _history(days))
    assert sick >= manifest.extra["high_threshold"]
    assert sick > 5 * stable
    assert stable < manifest.extra["alert_threshold"]


def test_exact_contributions_over_many_patients(model):
    reference = np.load(SHIPPED_ARTIFACT_DIR / "reference.npz")
    X = reference["features"]
    assert len(X) >= 1000
    pred = model.predict(X)
    np.testing.assert_allclose(
        pred.intercept + pred.contributions.sum(axis=1), pred.logit, atol=1e-5
    )
    np.testing.assert_allclose(1 / (1 + np.exp(-pred.logit)), pred.probability, atol=1e-9)
    np.testing.assert_allclose(pred.probability, reference["probability"], atol=1e-6)


def test_missing_features_score_and_are_explained(model):
    only_spo2 = _history({"spo2": [94.0] * 5})
    X, _ = compute_features(
        only_spo2,
        np.array([0]),
        np.array([NOW_S]),
        np.array([70.0]),
        first_reading_s=np.array([ENROLLED_S]),
    )
    assert np.isnan(X[0, FEATURE_INDEX["weight_kg_delta_baseline"]])
    pred = model.predict(X)
    assert 0 < pred.probability[0] < 1 and np.isfinite(pred.contributions).all()
