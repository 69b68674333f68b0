"""Rule-engine timings: one patient per shipped pathway, and 10,000 patients vectorised.

Run: ``python -m bench.bench_rules``. Patients are synthetic (two weeks of readings on each
pathway's schedule, a few questionnaire answers); targets from issue 4: ≤ 200 µs for one
patient, ≤ 1 s for a batch of 10,000. Times are CPU time of this process (``process_time``),
best of a few repeats, so other work on a shared machine does not inflate them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from models.rules import (
    PatientReadings,
    ReadingsBatch,
    evaluate,
    evaluate_batch,
    load_rule_set,
    load_shipped_pathways,
)
from models.rules.catalogue import QUESTIONNAIRE_ITEMS
from models.rules.schema import Pathway

AS_OF = 1_780_000_000
DAY = 86_400
TYPICAL = {
    "spo2": (94, 2),
    "heart_rate": (82, 10),
    "respiratory_rate": (18, 3),
    "temperature": (37.0, 0.5),
    "systolic_bp": (125, 15),
    "weight": (80, 1),
}


def synthetic_patient(pathway: Pathway, rng: np.random.Generator) -> PatientReadings:
    """Two weeks of readings on the pathway's schedule, with noise, and recent answers."""
    measurements: dict[str, list[tuple[int, object]]] = {}
    for scheduled in pathway.measurements:
        centre, sd = TYPICAL[scheduled.measurement]
        n = max(1, int(14 * scheduled.per_day))
        times = AS_OF - np.sort(rng.integers(0, 14 * DAY, size=n))[::-1]
        values = np.round(
            np.minimum(
                centre + sd * rng.standard_normal(n),
                100 if scheduled.measurement == "spo2" else 250,
            ),
            1,
        )
        measurements[scheduled.measurement] = list(
            zip(times.tolist(), values.tolist(), strict=True)
        )
    measurements["on_oxygen"] = [(AS_OF - 3600, bool(rng.random() < 0.1))]
    measurements["consciousness"] = [(AS_OF - 3600, "alert")]
    measurements["symptom_score"] = [(AS_OF - 7200, float(rng.integers(0, 8)))]
    answers = {
        q.id: {
            item: [(AS_OF - 7200, int(rng.integers(0, 4)))] for item in QUESTIONNAIRE_ITEMS[q.id]
        }
        for q in pathway.questionnaires
    }
    return PatientReadings.build(
        AS_OF, float(rng.uniform(0.2, 90)), measurements, answers, enrolled_s=AS_OF - 30 * DAY
    )


def per_call_us(fn: Callable[[], object], repeat: int = 5, number: int = 400) -> float:
    """Best-of-``repeat`` mean time per call in µs (best: least disturbed by other work)."""
    fn()  # warm caches (compiled program)
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - start) / number)
    return best * 1e6


def seconds(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    rng = np.random.default_rng(2026)
    pathways = load_shipped_pathways()
    print("Rule engine, synthetic patients (two weeks of readings each); CPU time, best of runs\n")
    print(
        f"{'pathway':<16}{'rules':>6}{'1 patient µs':>14}{'10k batch s':>13}"
        f"{'10k + texts s':>15}{'build batch s':>15}"
    )
    for pathway_id, pathway in pathways.items():
        patient = synthetic_patient(pathway, rng)
        single = per_call_us(lambda p=pathway, r=patient: evaluate(p, r, 0.3))
        patients = [synthetic_patient(pathway, rng) for _ in range(10_000)]
        probabilities = rng.random(len(patients))
        batch = ReadingsBatch.from_patients(patients)
        build = seconds(lambda ps=patients: ReadingsBatch.from_patients(ps), repeat=1)
        batch_s = seconds(lambda p=pathway, b=batch, pr=probabilities: evaluate_batch(p, b, pr))
        full_s = seconds(
            lambda p=pathway, b=batch, pr=probabilities: evaluate_batch(p, b, pr).evaluations(),
            repeat=1,
        )
        n_rules = len(pathway.rules) + sum(len(load_rule_set(r).rules) for r in pathway.rule_sets)
        print(
            f"{pathway_id:<16}{n_rules:>6}{single:>14.1f}{batch_s:>13.3f}{full_s:>15.3f}"
            f"{build:>15.3f}"
        )

    news2 = load_rule_set("news2")
    values = {
        "respiratory_rate": 18,
        "spo2": 95,
        "on_oxygen": False,
        "systolic_bp": 120,
        "heart_rate": 80,
        "consciousness": "alert",
        "temperature": 37.0,
    }
    dry = per_call_us(
        lambda: evaluate(
            news2, PatientReadings.from_latest_values(values, age_years=70, as_of_s=AS_OF)
        ).to_dict()
    )
    print(f"\nDry run of rule set news2 from a dict of latest values, to JSON: {dry:.1f} µs")
    print(
        "Targets: ≤ 200 µs per patient; ≤ 1 s per 10,000 patients (levels and scores; "
        "'+ texts' also renders every fired rule in both languages)."
    )


if __name__ == "__main__":
    main()
