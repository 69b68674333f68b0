"""Drift windows from training's cohort simulator: ``triage drift file --demo`` and the tests.

A simulated cohort goes through the same patient-day row definition as the service's store
(monitoring.window), and the model in use scores the rows. Scenarios: ``unchanged`` (another
seed), ``population`` (an older population with more heart failure), ``device-spo2`` (pulse
oximeters of one device type reading 3 points low), ``device-weight`` (scales switching to pounds
halfway), ``adherence`` (a third of the patients stop measuring on most days halfway).
The composition root may import training; monitoring may not, so this lives here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.features import DAY_S, HISTORY_CHANNELS

POUNDS_PER_KG = 2.20462
ORGANISATIONS = ("974557746", "983974899")  # two health trusts (synthetic organisation numbers)
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


def frame_from_cohort(cohort: Any, model: Any, start_s: int, end_s: int) -> Any:
    """The cohort's patient-day rows in [start_s, end_s), as the service builds them."""
    from monitoring.data import MonitoringFrame
    from monitoring.window import YEAR_S, patient_day_rows

    history = cohort.history()
    n = len(cohort.patients)
    first = np.full(n, np.iinfo(np.int64).max // 4, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    np.minimum.at(first, history.patient, history.time_s)
    np.maximum.at(last, history.patient, history.time_s)
    age0 = np.array([p.age_years for p in cohort.patients]) - cohort.start_s / YEAR_S
    onsets = [np.asarray(e, dtype=np.int64) for e in cohort.event_onset_s]
    rows = patient_day_rows(
        history,
        age0,
        first,
        last,
        start_s,
        end_s,
        # The hospital reports each deterioration (an outcome); the days until the patient
        # measures again are a hospital stay.
        admission_patient=np.repeat(np.arange(n), [len(e) for e in onsets]),
        admission_start_s=np.concatenate(onsets) if onsets else np.zeros(0, np.int64),
    )
    pathway = np.array([p.pathway for p in cohort.patients], dtype=str)
    return MonitoringFrame(
        X=rows.X,
        probability=model.predict(rows.X).probability if len(rows) else np.zeros(0),
        pathway=pathway[rows.patient],
        # Organisations alternate by pairs, device types by single patients: not the same split.
        organisation=np.asarray(ORGANISATIONS)[(rows.patient // 2) % len(ORGANISATIONS)],
        scored_at=rows.time_s,
        raw={ch: rows.latest[:, j] for j, ch in enumerate(HISTORY_CHANNELS)},
        patient=np.char.add("sim-", rows.patient.astype(str)),
    )


def demo_window(model: Any, scenario: str, seed: int, n_patients: int = 200) -> Any:
    """(local baseline, window) of ``scenario``: two weeks each, the change starting between.

    Days 90–104 of the staggered cohort are the baseline, days 104–118 the window.
    """
    change_day = STEADY_FROM_DAY + 14
    cohort = simulate(n_patients, seed, scenario, fault_from_day=change_day)
    s0 = cohort.start_s
    reference = frame_from_cohort(
        cohort, model, s0 + STEADY_FROM_DAY * DAY_S, s0 + change_day * DAY_S
    )
    current = frame_from_cohort(
        cohort, model, s0 + change_day * DAY_S, s0 + (change_day + 14) * DAY_S
    )
    return reference, current
