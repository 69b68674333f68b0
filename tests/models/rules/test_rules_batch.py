"""The vectorised batch path gives exactly what the single path gives, patient by patient."""

import numpy as np
import pytest
from rules_helpers import AS_OF, DAY, HOUR

from models.rules import (
    Override,
    PatientReadings,
    ReadingsBatch,
    evaluate,
    evaluate_batch,
    load_pathway,
    load_rule_set,
)
from models.rules.catalogue import QUESTIONNAIRE_ITEMS

CENTRE = {
    "spo2": 93,
    "heart_rate": 90,
    "respiratory_rate": 20,
    "temperature": 37.5,
    "systolic_bp": 115,
    "weight": 80,
    "diastolic_bp": 75,
}
SPREAD = {
    "spo2": 4,
    "heart_rate": 25,
    "respiratory_rate": 6,
    "temperature": 1.0,
    "systolic_bp": 25,
    "weight": 1.5,
    "diastolic_bp": 10,
}


def _value(name, rng):
    # Coarse grid (whole numbers, 0.1 °C, 0.5 kg) so readings land exactly on band edges.
    raw = CENTRE[name] + SPREAD[name] * rng.standard_normal()
    step = 0.1 if name == "temperature" else 0.5 if name == "weight" else 1.0
    value = round(raw / step) * step
    return float(
        np.clip(value, 41 if name != "temperature" else 33, 100 if name == "spo2" else 250)
    )


def random_patient(pathway, rng) -> PatientReadings:
    as_of = AS_OF + int(rng.integers(0, DAY))
    measurements = {}
    for scheduled in pathway.measurements:
        n = int(rng.integers(0, 35))
        times = sorted(set((as_of - rng.integers(0, 17 * DAY, size=n)).tolist()))
        measurements[scheduled.measurement] = [
            (t, _value(scheduled.measurement, rng)) for t in times
        ]
    if rng.random() < 0.7:
        measurements["on_oxygen"] = [(as_of - HOUR, bool(rng.random() < 0.3))]
    if rng.random() < 0.6:
        measurements["consciousness"] = [
            (as_of - 2 * HOUR, (rng.random() < 0.1 and "cvpu") or "alert")
        ]
    if rng.random() < 0.8:
        measurements["symptom_score"] = [
            (as_of - int(rng.integers(0, 4 * DAY)), float(rng.integers(0, 11)))
        ]
    answers = {}
    for q in pathway.questionnaires:
        answers[q.id] = {
            item: [(as_of - int(rng.integers(0, 4 * DAY)), int(rng.integers(0, 4)))]
            for item in QUESTIONNAIRE_ITEMS[q.id]
            if rng.random() < 0.8
        }
    options = {o.id: True for o in pathway.options if rng.random() < 0.3}
    enrolled = None if rng.random() < 0.5 else as_of - int(rng.integers(0, 10 * DAY))
    age = float(rng.choice([0.2, 0.5, 1.0, 3.0, 5.0, 11.9, 12.0, 15.0, 45.0, 80.0]))
    return PatientReadings.build(as_of, age, measurements, answers, options, enrolled)


@pytest.mark.parametrize(
    "pathway_id", ["copd", "heart-failure", "post-operative", "oncology", "paediatric"]
)
def test_batch_equals_single_for_every_patient(pathway_id):
    pathway = load_pathway(pathway_id)
    rng = np.random.default_rng(sum(map(ord, pathway_id)))
    patients = [random_patient(pathway, rng) for _ in range(150)]
    probabilities = [None if rng.random() < 0.2 else float(rng.random()) for _ in patients]
    first_band_rule = next(r for r in pathway.rules if r.type == "bands")
    overrides = {
        i: [
            Override(
                rule=first_band_rule.id,
                bands=[{"lt": 80, "level": "red"}, {"ge": 80}],
                reason="test",
                author="tester",
                created_s=AS_OF - DAY,
                expires_s=AS_OF + (DAY if i % 2 else -HOUR),
            )
        ]
        for i in range(0, len(patients), 7)
    }
    batch = evaluate_batch(pathway, patients, probabilities, overrides)
    fired = 0
    for i, patient in enumerate(patients):
        single = evaluate(pathway, patient, probabilities[i], overrides.get(i, ()))
        assert batch.evaluation(i) == single, f"patient {i}"
        assert batch.level[i] == single.level
        for key, value in single.scores.items():
            got = batch.scores[key][i]
            assert (np.isnan(got) and value is None) or got == value
        fired += len(single.fired)
    assert fired > 100  # the comparison must cover fired rules, not only quiet patients


def test_batch_on_a_rule_set_dry_run():
    rng = np.random.default_rng(7)
    patients = [
        PatientReadings.from_latest_values(
            {
                "respiratory_rate": int(rng.integers(5, 30)),
                "spo2": int(rng.integers(85, 100)),
                "on_oxygen": bool(rng.random() < 0.3),
                "systolic_bp": int(rng.integers(80, 230)),
                "heart_rate": int(rng.integers(35, 140)),
                "temperature": 35.0 + rng.integers(0, 50) / 10,
                "consciousness": "alert",
            },
            age_years=70,
            as_of_s=AS_OF,
        )
        for _ in range(200)
    ]
    news2 = load_rule_set("news2")
    batch = evaluate_batch(news2, ReadingsBatch.from_patients(patients))
    assert [e.to_dict() for e in batch.evaluations()] == [
        evaluate(news2, p).to_dict() for p in patients
    ]
    assert set(batch.level) == {"green", "yellow", "red"}


def test_batch_round_trips_patients_and_refuses_wrong_lengths():
    pathway = load_pathway("copd")
    rng = np.random.default_rng(3)
    patients = [random_patient(pathway, rng) for _ in range(5)]
    batch = ReadingsBatch.from_patients(patients)
    assert [batch.patient(i) for i in range(5)] == patients
    with pytest.raises(ValueError, match="2 probabilities for 5 patients"):
        evaluate_batch(pathway, batch, [0.1, 0.2])
