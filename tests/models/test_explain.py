"""Plain-language explanations in bokmål and English, exact by construction."""

from __future__ import annotations

import numpy as np
import pytest

from models.explain import explain
from models.features import FEATURE_INDEX, N_FEATURES


def _row(**values):
    x = np.full(N_FEATURES, np.nan)
    for name, v in values.items():
        x[FEATURE_INDEX[name]] = v
    return x


CTX = {
    "spo2": {"latest": 90.0, "baseline": 94.0, "hours_since_last": 0.0},
    "weight": {"latest": None, "baseline": None, "hours_since_last": None},
    "heart_rate": {"latest": None, "baseline": None, "hours_since_last": 80.0},
}


def test_baseline_deviation_reads_like_a_clinician_would_say_it():
    x = _row(spo2_pct_latest=90, spo2_pct_delta_baseline=-4, age_band=5)
    c = np.zeros(N_FEATURES)
    c[FEATURE_INDEX["spo2_pct_delta_baseline"]] = 1.2
    e = explain(x, c, -2.0, -0.8, 0.31, CTX, {"spo2", "heart_rate"})
    top = e.top(1)[0]
    assert top.text_en == "SpO2 4 points below personal baseline (90 % vs 94 %)"
    assert top.text_nb == "SpO2 4 prosentpoeng under personlig baseline (90 % mot 94 %)"
    assert top.direction == "raises"


def test_missing_data_is_named_and_structural_missing_is_the_pathway_baseline():
    x = _row(age_band=5)
    c = np.zeros(N_FEATURES)
    c[FEATURE_INDEX["heart_rate_bpm_latest"]] = 0.4
    c[FEATURE_INDEX["weight_kg_change_3d"]] = -0.3  # weight is not in this pathway
    e = explain(x, c, -2.0, -1.9, 0.13, CTX, {"spo2", "heart_rate"})
    texts = {f.feature: f.text_en for f in e.factors}
    assert texts["heart_rate_bpm_latest"] == "No Heart rate for 3 days"
    assert "weight_kg_change_3d" not in texts
    assert e.pathway_baseline == pytest.approx(-0.3)
    assert e.intercept + e.pathway_baseline + sum(
        f.contribution for f in e.factors
    ) == pytest.approx(e.logit)


def test_norwegian_numbers_use_decimal_comma():
    x = _row(temperature_c_change_1d=1.5)
    c = np.zeros(N_FEATURES)
    c[FEATURE_INDEX["temperature_c_change_1d"]] = 0.9
    e = explain(x, c, 0.0, 0.9, 0.7, {}, None)
    assert e.top(1)[0].text_nb == "Kroppstemperatur steg 1,5 °C siste døgn"
    assert e.top(1)[0].text_en == "Body temperature rose 1.5 °C in 1 day"


def test_no_missed_days_reads_as_adherence_not_as_a_missing_count():
    x = _row(missed_measurement_days_3d=0)
    c = np.zeros(N_FEATURES)
    c[FEATURE_INDEX["missed_measurement_days_3d"]] = -0.3
    top = explain(x, c, 0.0, -0.3, 0.4, {}, None).top(1)[0]
    assert top.text_en == "Measurements on each of the last 3 days"
    assert top.text_nb == "Målinger hvert døgn de siste 3 døgnene"
