"""Behavioural checks across every shipped pathway (direction, invariance, minimum function)."""

import pytest
from rules_helpers import AS_OF

from models.measurements import MEASUREMENTS
from models.rules import PatientReadings, evaluate, load_pathway

SHIPPED = ("copd", "heart-failure", "post-operative", "oncology", "paediatric")
NORMAL = {
    "respiratory_rate": 16,
    "spo2": 97,
    "on_oxygen": False,
    "systolic_bp": 125,
    "heart_rate": 75,
    "consciousness": "alert",
    "temperature": 36.9,
}
RANK = {"green": 0, "yellow": 1, "red": 2}


def _level(pathway_id, values, age=60.0):
    patient = PatientReadings.from_latest_values(values, age_years=age, as_of_s=AS_OF)
    return RANK[evaluate(load_pathway(pathway_id), patient).level]


@pytest.mark.parametrize("pathway_id", SHIPPED)
def test_falling_spo2_on_air_never_lowers_the_level(pathway_id):
    levels = [_level(pathway_id, {**NORMAL, "spo2": s}, age=10) for s in range(100, 69, -1)]
    assert levels == sorted(levels)
    assert levels[-1] == RANK["red"]


@pytest.mark.parametrize("pathway_id", SHIPPED)
@pytest.mark.parametrize("measurement", ["heart_rate", "respiratory_rate", "temperature"])
def test_moving_away_from_normal_never_lowers_the_level(pathway_id, measurement):
    spec = MEASUREMENTS[measurement]
    step = 0.1 if measurement == "temperature" else 1
    for direction, stop in ((1, spec.plausible_max), (-1, spec.plausible_min)):
        levels, value = [], NORMAL[measurement]
        while (stop - value) * direction >= 0:
            levels.append(_level(pathway_id, {**NORMAL, measurement: round(value, 1)}))
            value += direction * step
        assert levels == sorted(levels), (measurement, direction)
        scheduled = {m.measurement for m in load_pathway(pathway_id).measurements}
        if measurement in scheduled:  # an extreme value of a monitored vital is never green
            assert levels[-1] >= RANK["yellow"], (measurement, direction)


@pytest.mark.parametrize("pathway_id", SHIPPED)
def test_a_textbook_deterioration_is_red(pathway_id):
    deteriorating = {
        "respiratory_rate": 28,
        "spo2": 86,
        "on_oxygen": False,
        "systolic_bp": 88,
        "heart_rate": 135,
        "consciousness": "cvpu",
        "temperature": 39.4,
    }
    assert _level(pathway_id, deteriorating, age=8 if pathway_id == "paediatric" else 70) == 2


@pytest.mark.parametrize("pathway_id", SHIPPED)
def test_normal_values_are_green(pathway_id):
    assert _level(pathway_id, NORMAL, age=14 if pathway_id == "paediatric" else 60) == 0


@pytest.mark.parametrize("pathway_id", SHIPPED)
def test_an_unused_measurement_changes_nothing(pathway_id):
    pathway = load_pathway(pathway_id)
    base = PatientReadings.from_latest_values(NORMAL, age_years=60, as_of_s=AS_OF)
    extra = PatientReadings.from_latest_values(
        {**NORMAL, "glucose": 14.0}, age_years=60, as_of_s=AS_OF
    )
    assert evaluate(pathway, base).to_dict() == evaluate(pathway, extra).to_dict()


def test_evaluation_does_not_change_its_inputs():
    pathway = load_pathway("copd")
    patient = PatientReadings.from_latest_values(
        {**NORMAL, "spo2": 85}, age_years=60, as_of_s=AS_OF
    )
    before_doc, before_series = (
        pathway.model_dump(),
        {k: (list(t), list(v)) for k, (t, v) in patient.series.items()},
    )
    first = evaluate(pathway, patient)
    assert pathway.model_dump() == before_doc
    assert patient.series == before_series
    assert evaluate(pathway, patient) == first
