"""Simulated cohorts for drift monitoring: ``triage drift file --demo`` and the drift tests.

Scenarios: ``unchanged`` (another seed), ``population`` (an older population with more heart
failure), ``device-spo2`` (pulse oximeters of one device type reading 3 points low),
``device-weight`` (scales switching to pounds), ``adherence`` (a third of the patients stop
measuring on most days), each from a given day. Rows are built from a cohort by
``monitoring.window.frame_from_cohort``, the definition the service uses on its store.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.features import DAY_S

POUNDS_PER_KG = 2.20462
# Patients enrol over ENROL_SPREAD_DAYS and are followed up for FOLLOW_UP_DAYS (as the training
# cohort is), so from day FOLLOW_UP_DAYS on every window holds patients at every stage of follow-up,
# as a running service does. A cohort that all starts on one day is not a steady state: its
# third week differs from the model's reference just by being everyone's third week.
FOLLOW_UP_DAYS = 90
ENROL_SPREAD_DAYS = 90
STEADY_FROM_DAY = 90
OLDER_MORE_HEART_FAILURE = ("copd", "heart-failure", "heart-failure", "heart-failure", "oncology")
SCENARIOS = ("unchanged", "population", "device-spo2", "device-weight", "adherence")
DEMO_START = datetime(2026, 1, 5, tzinfo=UTC)


def device_type_of(key: int) -> str:
    """Which of two pulse-oximeter models a simulated patient was given (every other patient)."""
    return "oximeter-b" if key % 2 else "oximeter-a"


def with_fault(cohort: Any, scenario: str, from_day: int = 0) -> Any:
    """The cohort as a faulty device, or a change in adherence, would have reported it."""
    r = cohort.readings
    value, keep = r.value.copy(), np.ones(len(r), dtype=bool)
    after = r.time_s >= cohort.start_s + from_day * DAY_S
    if scenario == "device-spo2":
        on_b = np.array([device_type_of(int(k)) == "oximeter-b" for k in r.patient])
        value[(r.channel == "spo2") & on_b & after] -= 3.0
    elif scenario == "device-weight":
        value[(r.channel == "weight") & after] *= POUNDS_PER_KG
    elif scenario == "adherence":
        rng = np.random.default_rng(cohort.seed)
        lapsed = (r.patient % 3 == 0) & after
        day = (r.time_s - cohort.start_s) // DAY_S
        skip_day = rng.random(int(day.max()) + 1 if len(day) else 1) < 0.7
        keep &= ~(lapsed & skip_day[np.clip(day, 0, None)])
    elif scenario not in ("unchanged", "population"):
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    readings = replace(
        r,
        patient=r.patient[keep],
        channel=r.channel[keep],
        time_s=r.time_s[keep],
        value=value[keep],
        message_id=r.message_id[keep],
    )
    return replace(cohort, readings=readings)


def staggered(cohort: Any, spread_days: int = ENROL_SPREAD_DAYS) -> Any:
    """The cohort with patients enrolled on different days (seeded by the cohort's seed)."""
    rng = np.random.default_rng(cohort.seed + 7)
    offset_s = rng.integers(0, spread_days, size=len(cohort.patients)).astype(np.int64) * DAY_S
    r = cohort.readings
    readings = replace(r, time_s=r.time_s + offset_s[r.patient])
    order = np.lexsort((readings.channel, readings.time_s, readings.patient))
    readings = replace(
        readings,
        patient=readings.patient[order],
        channel=readings.channel[order],
        time_s=readings.time_s[order],
        value=readings.value[order],
        message_id=readings.message_id[order],
    )
    answers = [
        replace(a, time_s=int(a.time_s + offset_s[a.patient])) for a in cohort.questionnaire_answers
    ]
    return replace(
        cohort,
        readings=readings,
        questionnaire_answers=answers,
        days=cohort.days + spread_days,
        event_onset_s=[e + offset_s[k] for k, e in enumerate(cohort.event_onset_s)],
        admission_end_s=[e + offset_s[k] for k, e in enumerate(cohort.admission_end_s)],
    )


def simulate(
    n_patients: int,
    seed: int,
    scenario: str = "unchanged",
    fault_from_day: int = 0,
    start: datetime = DEMO_START,
) -> Any:
    """A staggered cohort (see FOLLOW_UP_DAYS) with ``scenario`` applied from ``fault_from_day``."""
    from training.simulator import simulate_cohort

    pathways = OLDER_MORE_HEART_FAILURE if scenario == "population" else None
    cohort = simulate_cohort(n_patients, FOLLOW_UP_DAYS, seed, pathways=pathways, start=start)
    if scenario == "population":
        older = [replace(p, age_years=p.age_years + 12) for p in cohort.patients]
        cohort = replace(cohort, patients=older)
    return with_fault(staggered(cohort), scenario, fault_from_day)
