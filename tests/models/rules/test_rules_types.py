"""Every rule type: meaning, units, edge behaviour and its wording in bokmål and English."""

import typing

import pytest
from rules_helpers import AS_OF, DAY, HOUR, pathway, readings, series

from models.rules import RULE_TYPES, evaluate
from models.rules.schema import Rule

# Completeness (as Evidently's preset test): each rule type must be listed here by a test
# below; a new type without tests fails test_every_rule_type_is_tested.
TESTED_RULE_TYPES = {
    "bands",
    "category",
    "baseline_deviation",
    "change",
    "consecutive",
    "questionnaire",
    "missed",
    "combination",
    "score",
}


def test_every_rule_type_is_tested():
    union = typing.get_args(typing.get_args(Rule)[0])
    declared = {typing.get_args(cls.model_fields["type"].annotation)[0] for cls in union}
    assert declared == set(RULE_TYPES)
    assert set(RULE_TYPES) == TESTED_RULE_TYPES


def _fired(result):
    return {f.rule: f for f in result.fired}


# ---------------------------------------------------------------------------------- bands

SPO2_BANDS = {
    "id": "spo2-low",
    "type": "bands",
    "measurement": "spo2",
    "unit": "%",
    "direction": "low",
    "bands": [{"lt": 88, "level": "red"}, {"ge": 88, "lt": 92, "level": "yellow"}, {"ge": 92}],
}


@pytest.mark.parametrize(
    ("spo2", "level"),
    [(87, "red"), (87.9, "red"), (88, "yellow"), (91, "yellow"), (92, "green"), (100, "green")],
)
def test_bands_edges(spo2, level):
    result = evaluate(pathway([SPO2_BANDS]), readings({"spo2": series((1, spo2))}))
    assert result.level == level


def test_bands_text_in_both_languages():
    result = evaluate(pathway([SPO2_BANDS]), readings({"spo2": series((1, 87))}))
    fired = _fired(result)["spo2-low"]
    assert fired.text_nb == "SpO2 < 88 % (målt 87 %)"
    assert fired.text_en == "SpO2 < 88 % (measured 87 %)"
    assert fired.values == {
        "measurement": "spo2",
        "value": 87.0,
        "unit": "%",
        "time_s": AS_OF - HOUR,
        "points": 0,
    }


def test_bands_ignore_readings_older_than_three_days():
    result = evaluate(pathway([SPO2_BANDS]), readings({"spo2": series((80, 85))}))
    assert result.level == "green"
    assert "spo2" in result.missing


def test_decimal_comma_in_norwegian():
    rule = {
        "id": "fever",
        "type": "bands",
        "measurement": "temperature",
        "unit": "Cel",
        "bands": [{"lt": 38.5}, {"ge": 38.5, "level": "red"}],
    }
    fired = _fired(evaluate(pathway([rule]), readings({"temperature": series((1, 38.7))})))
    assert fired["fever"].text_nb == "Temperatur ≥ 38,5 °C (målt 38,7 °C)"
    assert fired["fever"].text_en == "Temperature ≥ 38.5 °C (measured 38.7 °C)"


# ---------------------------------------------------------------------------------- category


def test_category_level_and_text():
    rule = {
        "id": "confused",
        "type": "category",
        "measurement": "consciousness",
        "levels": {"cvpu": "red"},
    }
    result = evaluate(pathway([rule]), readings({"consciousness": series((1, "cvpu"))}))
    assert result.level == "red"
    fired = _fired(result)["confused"]
    assert fired.text_nb.startswith("Bevissthet: ny forvirring")
    assert fired.text_en.startswith("Consciousness: new confusion")
    alert = evaluate(pathway([rule]), readings({"consciousness": series((1, "alert"))}))
    assert alert.level == "green"


# ---------------------------------------------------------------------------------- change

WEIGHT_GAIN = {
    "id": "weight-gain-3d",
    "type": "change",
    "measurement": "weight",
    "unit": "kg",
    "op": ">",
    "thresholds": {"yellow": 1.5, "red": 2.0},
    "window_hours": 72,
}


def test_change_weight_gain_over_2_kg_in_3_days_is_red():
    weights = series((72, 80.0), (48, 80.5), (24, 81.4), (0, 82.3))
    result = evaluate(pathway([WEIGHT_GAIN]), readings({"weight": weights}))
    fired = _fired(result)["weight-gain-3d"]
    assert fired.level == "red"
    assert fired.text_nb == "Vektøkning over 2 kg på 3 døgn (målt +2,3 kg)"
    assert fired.text_en == "Weight gain over 2 kg in 3 days (measured +2.3 kg)"
    assert fired.values["reference"] == 80.0


def test_change_uses_the_lower_level_threshold_for_smaller_gains():
    weights = series((48, 80.0), (0, 81.6))
    fired = _fired(evaluate(pathway([WEIGHT_GAIN]), readings({"weight": weights})))
    assert fired["weight-gain-3d"].level == "yellow"
    assert "1,5 kg" in fired["weight-gain-3d"].text_nb


@pytest.mark.parametrize(("gain", "fires"), [(2.0, "yellow"), (2.01, "red")])
def test_change_threshold_is_strict(gain, fires):
    weights = series((24, 80.0), (0, 80.0 + gain))
    result = evaluate(pathway([WEIGHT_GAIN]), readings({"weight": weights}))
    assert result.level == fires


def test_change_ignores_readings_before_the_window():
    weights = series((100, 77.0), (0, 80.0))  # 100 h before: outside 72 h
    result = evaluate(pathway([WEIGHT_GAIN]), readings({"weight": weights}))
    assert result.fired == ()


def test_change_fall():
    rule = {
        "id": "weight-loss",
        "type": "change",
        "measurement": "weight",
        "unit": "kg",
        "op": "<",
        "thresholds": {"yellow": -2.0},
        "window_hours": 168,
    }
    result = evaluate(pathway([rule]), readings({"weight": series((100, 80.0), (0, 77.5))}))
    fired = _fired(result)["weight-loss"]
    assert fired.text_nb == "Vekttap over 2 kg på 7 døgn (målt -2,5 kg)"
    assert fired.text_en == "Weight loss over 2 kg in 7 days (measured -2.5 kg)"


# ---------------------------------------------------------------------------------- consecutive

SPO2_TWICE = {
    "id": "spo2-low-twice",
    "type": "consecutive",
    "measurement": "spo2",
    "unit": "%",
    "op": "<",
    "thresholds": {"yellow": 90},
    "count": 2,
    "window_hours": 24,
}


def test_consecutive_twice_in_24_hours():
    result = evaluate(pathway([SPO2_TWICE]), readings({"spo2": series((20, 89), (2, 88))}))
    fired = _fired(result)["spo2-low-twice"]
    assert fired.text_nb == "SpO2 under 90 % to ganger på 24 timer (målt 89, 88 %)"
    assert fired.text_en == "SpO2 below 90 % twice in 24 h (measured 89, 88 %)"


@pytest.mark.parametrize(
    "pairs",
    [
        ((20, 89), (2, 91)),  # second reading normal
        ((30, 89), (2, 88)),  # first outside 24 h
        ((20, 88), (10, 95), (2, 88)),  # not consecutive
        ((2, 85),),
    ],
)  # only one reading
def test_consecutive_does_not_fire(pairs):
    result = evaluate(pathway([SPO2_TWICE]), readings({"spo2": series(*pairs)}))
    assert result.fired == ()


# ---------------------------------------------------------------------------------- baseline


def _steady_heart_rate(latest):
    history = [(24 * d + 2, 70 + (d % 3)) for d in range(1, 14)]  # 70–72 over two weeks
    return series(*history, (1, latest))


def test_baseline_deviation_absolute():
    rule = {
        "id": "hr-above-baseline",
        "type": "baseline_deviation",
        "measurement": "heart_rate",
        "unit": "/min",
        "op": ">",
        "thresholds": {"yellow": 15},
    }
    result = evaluate(pathway([rule]), readings({"heart_rate": _steady_heart_rate(90)}))
    fired = _fired(result)["hr-above-baseline"]
    assert fired.values["baseline"] == 71.0
    assert fired.values["deviation"] == 19.0
    assert fired.text_nb.startswith("Puls mer enn 15 /min over personlig baseline")
    assert fired.text_en.startswith("Heart rate more than 15 /min above personal baseline")
    quiet = evaluate(pathway([rule]), readings({"heart_rate": _steady_heart_rate(80)}))
    assert quiet.fired == ()


def test_baseline_deviation_in_sds_uses_a_robust_sd_with_a_floor():
    rule = {
        "id": "hr-sd",
        "type": "baseline_deviation",
        "measurement": "heart_rate",
        "unit": "/min",
        "mode": "sd",
        "op": ">",
        "thresholds": {"yellow": 2.5},
    }
    # MAD of 70/71/72 is 1 -> SD 1.48, floored at 3 /min: 78 is (78-71)/3 = 2.33 SD
    assert evaluate(pathway([rule]), readings({"heart_rate": _steady_heart_rate(78)})).fired == ()
    fired = _fired(evaluate(pathway([rule]), readings({"heart_rate": _steady_heart_rate(80)})))
    assert fired["hr-sd"].values["deviation_sd"] == pytest.approx(3.0)
    assert "2,5 SD" in fired["hr-sd"].text_nb


def test_baseline_needs_enough_history():
    rule = {
        "id": "hr-above-baseline",
        "type": "baseline_deviation",
        "measurement": "heart_rate",
        "unit": "/min",
        "op": ">",
        "thresholds": {"yellow": 15},
    }
    result = evaluate(pathway([rule]), readings({"heart_rate": series((30, 70), (1, 120))}))
    assert result.fired == ()


# ---------------------------------------------------------------------------------- questionnaire


def test_questionnaire_item_threshold():
    rule = {
        "id": "orthopnoea",
        "type": "questionnaire",
        "questionnaire": "heart-failure-symptoms",
        "item": "orthopnoea",
        "op": ">=",
        "thresholds": {"yellow": 2, "red": 3},
    }
    answers = {"heart-failure-symptoms": {"orthopnoea": series((3, 2))}}
    fired = _fired(evaluate(pathway([rule]), readings(answers=answers)))["orthopnoea"]
    assert fired.level == "yellow"
    assert fired.text_nb == "Tung pust i liggende stilling: minst 2 poeng (svar 2 av 3)"
    assert fired.text_en == "Breathless lying flat: at least 2 points (answer 2 of 3)"


def test_questionnaire_symptom_score():
    rule = {
        "id": "score",
        "type": "questionnaire",
        "questionnaire": "heart-failure-symptoms",
        "item": "symptom_score",
        "op": ">=",
        "thresholds": {"yellow": 7},
    }
    result = evaluate(pathway([rule]), readings({"symptom_score": series((3, 8))}))
    assert _fired(result)["score"].text_en == "Symptom score: at least 7 points (answer 8 of 10)"


# ---------------------------------------------------------------------------------- missed


def test_missed_hours_since_last():
    rule = {
        "id": "weight-overdue",
        "type": "missed",
        "measurement": "weight",
        "measure": "hours_since_last",
        "op": ">",
        "thresholds": {"yellow": 48},
    }
    result = evaluate(pathway([rule]), readings({"weight": series((60, 80.0))}))
    fired = _fired(result)["weight-overdue"]
    assert fired.text_nb == "Ingen måling av vekt på over 48 timer (siste for 60 timer siden)"
    assert fired.text_en == "No weight reading for over 48 h (last 60 h ago)"
    fresh = evaluate(pathway([rule]), readings({"weight": series((20, 80.0))}))
    assert fresh.fired == ()


def test_missed_readings_against_the_schedule():
    rule = {
        "id": "spo2-missed",
        "type": "missed",
        "measurement": "spo2",
        "window_hours": 72,
        "op": ">=",
        "thresholds": {"yellow": 3},
    }
    # two a day scheduled -> 6 expected in 3 days; 2 received -> 4 missed
    result = evaluate(pathway([rule]), readings({"spo2": series((50, 95), (10, 96))}))
    fired = _fired(result)["spo2-missed"]
    assert fired.values["missed"] == 4 and fired.values["expected"] == 6
    assert fired.text_nb == "Minst 3 manglende målinger av SpO2 siste 3 døgn (4 av 6 mangler)"
    assert fired.text_en == "At least 3 missed SpO2 readings in the last 3 days (4 of 6 missing)"


def test_missed_readings_not_counted_before_enrolment():
    rule = {
        "id": "spo2-missed",
        "type": "missed",
        "measurement": "spo2",
        "window_hours": 72,
        "op": ">=",
        "thresholds": {"yellow": 3},
    }
    recent = readings({}, enrolled_s=AS_OF - DAY)
    assert evaluate(pathway([rule]), recent).fired == ()
    overdue = readings({}, enrolled_s=AS_OF - 4 * DAY)
    assert _fired(evaluate(pathway([rule]), overdue))["spo2-missed"].values["missed"] == 6


# ---------------------------------------------------------------------------------- combination

FEVER = {
    "id": "fever",
    "type": "bands",
    "measurement": "temperature",
    "unit": "Cel",
    "triage": False,
    "bands": [{"lt": 38.0}, {"ge": 38.0, "level": "yellow"}],
}
TACHY = {
    "id": "tachy",
    "type": "bands",
    "measurement": "heart_rate",
    "unit": "/min",
    "triage": False,
    "bands": [{"le": 100}, {"gt": 100, "level": "yellow"}],
}


@pytest.mark.parametrize(
    ("require", "temp", "hr", "level"),
    [
        ("all", 38.5, 110, "red"),
        ("all", 38.5, 80, "green"),
        ("all", 37.0, 110, "green"),
        ("any", 38.5, 80, "red"),
        ("any", 37.0, 80, "green"),
    ],
)
def test_combination(require, temp, hr, level):
    combo = {
        "id": "sepsis-screen",
        "type": "combination",
        "require": require,
        "rules": ["fever", "tachy"],
        "level": "red",
    }
    result = evaluate(
        pathway([FEVER, TACHY, combo]),
        readings({"temperature": series((1, temp)), "heart_rate": series((1, hr))}),
    )
    # the parts have triage: false, so only the combination can set the level
    assert result.level == level


def test_combination_text_lists_the_parts():
    combo = {
        "id": "sepsis-screen",
        "type": "combination",
        "require": "all",
        "rules": ["fever", "tachy"],
        "level": "red",
    }
    result = evaluate(
        pathway([FEVER, TACHY, combo]),
        readings({"temperature": series((1, 38.5)), "heart_rate": series((1, 110))}),
    )
    fired = _fired(result)["sepsis-screen"]
    assert fired.text_nb.startswith("Samtidig (Temperatur ≥ 38 °C (målt 38,5 °C); Puls")
    assert fired.text_en.startswith("Together (Temperature ≥ 38 °C (measured 38.5 °C); ")
    assert fired.values["rules"] == ["fever", "tachy"]


# ---------------------------------------------------------------------------------- score


def test_score_sum_and_max():
    parts = [
        {
            "id": "hr-pts",
            "type": "bands",
            "measurement": "heart_rate",
            "unit": "/min",
            "triage": False,
            "bands": [{"le": 100}, {"gt": 100, "points": 2}],
        },
        {
            "id": "t-pts",
            "type": "bands",
            "measurement": "temperature",
            "unit": "Cel",
            "triage": False,
            "bands": [{"lt": 38.0}, {"ge": 38.0, "points": 1}],
        },
    ]
    total = {
        "id": "mini",
        "type": "score",
        "name": "Mini",
        "components": ["hr-pts", "t-pts"],
        "op": ">=",
        "thresholds": {"red": 3},
    }
    top = {
        "id": "mini-max",
        "type": "score",
        "name": "Mini",
        "aggregate": "max",
        "components": ["hr-pts", "t-pts"],
        "op": ">=",
        "thresholds": {"yellow": 2},
    }
    doc = pathway([*parts, total, top])
    result = evaluate(
        doc, readings({"heart_rate": series((1, 110)), "temperature": series((1, 38.2))})
    )
    assert result.scores == {"mini": 3, "mini-max": 2}
    assert result.level == "red"
    assert _fired(result)["mini"].text_nb == "Mini minst 3 poeng (3 poeng)"
    assert _fired(result)["mini-max"].text_en == (
        "Single Mini parameter scoring at least 2 (heart rate 110 /min)"
    )
    nothing = evaluate(doc, readings({}))
    assert nothing.scores == {"mini": None, "mini-max": None}


def test_custom_text_replaces_the_generated_condition():
    rule = {
        **WEIGHT_GAIN,
        "text_nb": "Ring pasienten: vekten øker",
        "text_en": "Call the patient: weight rising",
    }
    result = evaluate(pathway([rule]), readings({"weight": series((24, 80.0), (0, 83.0))}))
    assert _fired(result)["weight-gain-3d"].text_nb == "Ring pasienten: vekten øker (målt +3 kg)"


def test_disabled_rule_never_fires():
    rule = {**SPO2_BANDS, "enabled": False}
    result = evaluate(pathway([rule]), readings({"spo2": series((1, 80))}))
    assert result.fired == ()


# ---------------------------------------------------------------------------------- describe


def test_every_rule_type_is_described_in_both_languages():
    from models.rules import describe_pathway, load_pathway

    described = {}
    for pathway_id in ("copd", "heart-failure", "post-operative", "oncology", "paediatric"):
        for item in describe_pathway(load_pathway(pathway_id)):
            described.setdefault(item["type"], item)
    extra = pathway([{**WEIGHT_GAIN, "id": "x"}, SPO2_TWICE])
    for item in describe_pathway(extra):
        described.setdefault(item["type"], item)
    assert set(described) == set(RULE_TYPES)
    for rule_type, item in described.items():
        assert item["meaning_nb"] and item["meaning_en"], rule_type
        assert item["conditions"], rule_type
        for condition in item["conditions"]:
            assert condition["text_nb"] != condition["text_en"], condition


def test_describe_reads_like_the_chart():
    from models.rules import describe_pathway, load_pathway

    by_id = {r["rule"]: r for r in describe_pathway(load_pathway("heart-failure"))}
    weight = [c["text_nb"] for c in by_id["weight-gain-3d"]["conditions"]]
    assert weight == [
        "Vektøkning over 1,5 kg på 3 døgn → gul",
        "Vektøkning over 2 kg på 3 døgn → rød",
    ]
    assert by_id["weight-gain-3d"]["unit"] == "kg"
    paediatric = {r["rule"]: r for r in describe_pathway(load_pathway("paediatric"))}
    first = paediatric["heart-rate-for-age"]["conditions"][0]
    assert first["text_en"] == "Under 1 year: Heart rate ≤ 80 /min → red"
    scale2 = {
        r["rule"]: r for r in describe_pathway(load_pathway("copd"), {"hypercapnic_failure": True})
    }
    assert "On oxygen: SpO2 > 96 % → 3 points" in [
        c["text_en"] for c in scale2["news2.spo2"]["conditions"]
    ]
