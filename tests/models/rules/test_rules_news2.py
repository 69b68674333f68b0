"""NEWS2 as configuration: every band edge of every parameter against the RCP 2017 chart
(docs/architecture.md §6), scale 1 and scale 2, plus the aggregate and single-parameter-3 triggers."""

import pytest

from models.rules import PatientReadings, evaluate, load_rule_set

AS_OF = 1_780_000_000

# The chart, written out independently of the shipped JSON: (lowest, highest, points) with
# inclusive ends at the chart's resolution (whole numbers; temperature to 0.1 °C).
CHART = {
    "respiratory_rate": [(2, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, 80, 3)],
    "systolic_bp": [(40, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, 300, 3)],
    "heart_rate": [
        (20, 40, 3),
        (41, 50, 1),
        (51, 90, 0),
        (91, 110, 1),
        (111, 130, 2),
        (131, 300, 3),
    ],
    "temperature": [
        (25.0, 35.0, 3),
        (35.1, 36.0, 1),
        (36.1, 38.0, 0),
        (38.1, 39.0, 1),
        (39.1, 45.0, 2),
    ],
}
SPO2_SCALE1 = [(0, 91, 3), (92, 93, 2), (94, 95, 1), (96, 100, 0)]
SPO2_SCALE2_AIR = [(0, 83, 3), (84, 85, 2), (86, 87, 1), (88, 100, 0)]
SPO2_SCALE2_O2 = [
    (0, 83, 3),
    (84, 85, 2),
    (86, 87, 1),
    (88, 92, 0),
    (93, 94, 1),
    (95, 96, 2),
    (97, 100, 3),
]


def _edges(chart):
    """Both ends of every band: the values where a wrong edge would show."""
    return [(value, points) for lo, hi, points in chart for value in (lo, hi)]


def _score(rule_set: str, values: dict) -> int:
    result = evaluate(
        load_rule_set(rule_set),
        PatientReadings.from_latest_values(values, age_years=70, as_of_s=AS_OF),
    )
    return result.scores["news2"]


@pytest.mark.parametrize("rule_set", ["news2", "news2-scale2"])
@pytest.mark.parametrize(
    ("parameter", "value", "points"),
    [(p, v, pts) for p, chart in CHART.items() for v, pts in _edges(chart)],
)
def test_every_band_edge_of_every_parameter(rule_set, parameter, value, points):
    assert _score(rule_set, {parameter: value}) == points


@pytest.mark.parametrize(("value", "points"), _edges(SPO2_SCALE1))
def test_spo2_scale1_edges_on_air_and_on_oxygen(value, points):
    assert _score("news2", {"spo2": value, "on_oxygen": False}) == points
    # "air or oxygen" adds 2 on oxygen; scale 1 bands themselves do not change
    assert _score("news2", {"spo2": value, "on_oxygen": True}) == points + 2


@pytest.mark.parametrize(("value", "points"), _edges(SPO2_SCALE2_AIR))
def test_spo2_scale2_edges_on_air(value, points):
    assert _score("news2-scale2", {"spo2": value, "on_oxygen": False}) == points


@pytest.mark.parametrize(("value", "points"), _edges(SPO2_SCALE2_O2))
def test_spo2_scale2_edges_on_oxygen(value, points):
    assert _score("news2-scale2", {"spo2": value, "on_oxygen": True}) == points + 2


def test_scale2_air_high_saturation_scores_zero_but_oxygen_scores_three():
    assert _score("news2-scale2", {"spo2": 98, "on_oxygen": False}) == 0
    assert _score("news2-scale2", {"spo2": 98, "on_oxygen": True}) == 3 + 2


@pytest.mark.parametrize(("value", "points"), [("alert", 0), ("cvpu", 3)])
def test_consciousness(value, points):
    assert _score("news2", {"consciousness": value}) == points


@pytest.mark.parametrize(("on_oxygen", "points"), [(False, 0), (True, 2)])
def test_air_or_oxygen(on_oxygen, points):
    assert _score("news2", {"on_oxygen": on_oxygen}) == points


NORMAL = {
    "respiratory_rate": 18,
    "spo2": 97,
    "on_oxygen": False,
    "systolic_bp": 120,
    "heart_rate": 80,
    "consciousness": "alert",
    "temperature": 37.0,
}


def _run(values, rule_set="news2"):
    return evaluate(
        load_rule_set(rule_set),
        PatientReadings.from_latest_values(values, age_years=70, as_of_s=AS_OF),
    )


def test_design_dry_run_example():
    result = _run({**NORMAL, "spo2": 95})
    assert result.scores == {"news2": 1, "news2_max_parameter": 1}
    assert result.level == "green"
    assert result.fired == ()
    assert result.rule_sets == {"news2": 1}


def test_aggregate_four_without_a_three_is_green():
    # HR 115 (2) + RR 22 (2) = 4
    result = _run({**NORMAL, "heart_rate": 115, "respiratory_rate": 22})
    assert result.scores["news2"] == 4
    assert result.level == "green"


def test_aggregate_five_is_red():
    # HR 115 (2) + RR 22 (2) + temperature 38.5 (1) = 5: RCP key threshold, urgent response
    result = _run({**NORMAL, "heart_rate": 115, "respiratory_rate": 22, "temperature": 38.5})
    assert result.scores["news2"] == 5
    assert result.level == "red"
    fired = {f.rule: f for f in result.fired}
    assert fired["news2"].level == "red"
    assert fired["news2"].values["components"]["news2.heart_rate"] == 2
    assert "NEWS2" in fired["news2"].text_nb and "5" in fired["news2"].text_en


def test_single_parameter_three_is_yellow_and_names_the_parameter():
    result = _run({**NORMAL, "respiratory_rate": 26})
    assert result.scores == {"news2": 3, "news2_max_parameter": 3}
    assert result.level == "yellow"
    (fired,) = result.fired
    assert fired.rule == "news2.single_parameter_3"
    assert "respirasjonsfrekvens 26 /min" in fired.text_nb
    assert "respiratory rate 26 /min" in fired.text_en


def test_missing_parameters_are_listed_not_scored_as_normal_silently():
    result = _run({"spo2": 90})
    assert result.scores["news2"] == 3
    (fired,) = result.fired
    assert "respiratory_rate" in fired.values["missing"]
    assert "temperature" in result.missing
