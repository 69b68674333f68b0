"""One row per patient-day in a window of clinical time, from readings: the drift row definition.

The service hands in the readings it stored (and each patient's age, first and last reading);
the simulator can hand in a simulated cohort's. Both go through the same two functions of
models/features.py: which patient-days fall in the window, when each is scored (the day's newest
reading, else the end of the day), and compute_features for the vector itself. So current and
local-baseline windows are built alike, and like the model's reference sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.features import (
    CHANNEL_INDEX,
    DAY_S,
    HISTORY_CHANNELS,
    History,
    compute_features,
    patient_day_times,
    window_patient_days,
)
from monitoring.data import MonitoringFrame

YEAR_S = 365.25 * DAY_S
# Two health trusts for simulated cohorts (synthetic organisation numbers).
SIMULATED_ORGANISATIONS = ("974557746", "983974899")


@dataclass
class PatientDays:
    """Rows of a window: patient index, reference time, features and the latest raw readings."""

    patient: np.ndarray  # int64 index into the caller's patient list
    time_s: np.ndarray  # int64 reference time (clinical time) of the row
    had_reading: np.ndarray  # bool: a reading that day (else an end-of-day row)
    X: np.ndarray  # [n, F]
    latest: np.ndarray  # [n, channels] latest value per history channel (canonical unit)

    def __len__(self) -> int:
        return len(self.patient)


def patient_day_rows(
    history: History,
    age_at_zero_s: np.ndarray,
    first_reading_s: np.ndarray,
    last_reading_s: np.ndarray,
    start_s: int,
    end_s: int,
    admission_patient: np.ndarray | None = None,
    admission_start_s: np.ndarray | None = None,
) -> PatientDays:
    """Rows of [start_s, end_s) for patients 0..n-1 of ``history``.

    ``age_at_zero_s[i]`` is patient i's age in years at epoch 0 (so age at t is that plus
    t / year); ``first_reading_s`` / ``last_reading_s`` bound each patient's follow-up.
    ``admission_*`` are recorded deteriorations (hospital contacts): from one until the
    patient's next reading the patient is in hospital, not missing measurements, and those days
    are no rows (as the training snapshots skip days in hospital).
    """
    patient, day_start = window_patient_days(first_reading_s, last_reading_s, start_s, end_s)
    time_s, had_reading = patient_day_times(history.patient, history.time_s, patient, day_start)
    inside = (time_s >= start_s) & (time_s < end_s)
    if admission_patient is not None and admission_start_s is not None and len(admission_patient):
        inside &= ~in_hospital(history, patient, time_s, admission_patient, admission_start_s)
    patient, time_s, had_reading = patient[inside], time_s[inside], had_reading[inside]
    if len(patient) == 0:
        empty = np.zeros((0, len(CHANNEL_INDEX)))
        from models.features import N_FEATURES

        return PatientDays(patient, time_s, had_reading, np.zeros((0, N_FEATURES)), empty)
    ages = np.asarray(age_at_zero_s, dtype=np.float64)[patient] + time_s / YEAR_S
    X, context = compute_features(
        history,
        patient,
        time_s,
        ages,
        first_reading_s=np.asarray(first_reading_s, dtype=np.int64)[patient],
    )
    return PatientDays(patient, time_s, had_reading, X, context.latest)


def in_hospital(
    history: History,
    patient: np.ndarray,
    time_s: np.ndarray,
    admission_patient: np.ndarray,
    admission_start_s: np.ndarray,
) -> np.ndarray:
    """Rows that fall between a recorded admission and the patient's next reading after it."""
    span = np.int64(1) << np.int64(40)
    readings = np.sort(history.patient * span + history.time_s)
    adm_p = np.asarray(admission_patient, dtype=np.int64)
    adm_t = np.asarray(admission_start_s, dtype=np.int64)
    nxt = np.searchsorted(readings, adm_p * span + adm_t, side="right")
    safe = np.minimum(nxt, max(len(readings) - 1, 0))
    same = (nxt < len(readings)) & (readings[safe] // span == adm_p) if len(readings) else nxt < 0
    adm_end = np.where(same, readings[safe] - adm_p * span, np.iinfo(np.int64).max // 4)
    out = np.zeros(len(patient), dtype=bool)
    for p, start, end in zip(adm_p, adm_t, adm_end, strict=True):
        out |= (patient == p) & (time_s >= start) & (time_s < end)
    return out


def frame_from_cohort(cohort: Any, model: Any, start_s: int, end_s: int) -> MonitoringFrame:
    """A simulated cohort's patient-day rows in [start_s, end_s), built as from the store.

    ``cohort`` is training's simulator Cohort (used by its shape: ``history()``, ``patients``,
    ``start_s``, ``event_onset_s``); ``model`` scores the rows. Organisations alternate by pairs
    of patients (the simulator's device types alternate by single patients: another split).
    """
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
        organisation=np.asarray(SIMULATED_ORGANISATIONS)[
            (rows.patient // 2) % len(SIMULATED_ORGANISATIONS)
        ],
        scored_at=rows.time_s,
        raw={ch: rows.latest[:, j] for j, ch in enumerate(HISTORY_CHANNELS)},
        patient=np.char.add("sim-", rows.patient.astype(str)),
    )
