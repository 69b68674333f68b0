"""Monitoring windows from training's cohort simulator, built by the service's own patient-day
definition (monitoring.window -> models.features) and scored by a model.

Patients enrol over 90 days and are followed for up to 90 (as in training), so a window holds
patients at every stage of follow-up. Scenarios: unchanged (another seed), population (older,
more heart failure), device-spo2 (one pulse-oximeter type reading 3 points low), device-weight
(scales switching to pounds), adherence (a third of the patients measuring on fewer days).
"""

from __future__ import annotations

from typing import Any

from models.features import DAY_S
from monitoring.data import MonitoringFrame
from monitoring.window import frame_from_cohort
from training.drift_scenarios import STEADY_FROM_DAY, simulate

WINDOW_DAYS = 14


def simulated_window(
    model: Any,
    n_patients: int,
    seed: int,
    scenario: str = "unchanged",
    *,
    from_day: int = STEADY_FROM_DAY,
    days: int = WINDOW_DAYS,
) -> MonitoringFrame:
    """Patient-day rows of days [from_day, from_day + days) of a staggered cohort."""
    cohort = simulate(n_patients, seed, scenario)
    start = cohort.start_s + from_day * DAY_S
    return frame_from_cohort(cohort, model, start, start + days * DAY_S)


def window_of(frame: MonitoringFrame) -> dict[str, int]:
    """The whole days a frame's rows fall in, as report() window arguments."""
    start = int(frame.scored_at.min()) // DAY_S * DAY_S
    return {"window_start": start, "window_end": (int(frame.scored_at.max()) // DAY_S + 1) * DAY_S}


def baseline_and_window(
    model: Any, n_patients: int, seed: int, scenario: str, *, days: int = WINDOW_DAYS
) -> tuple[MonitoringFrame, MonitoringFrame]:
    """The site's own baseline (first half) and the window (second half); the change starts
    at the halfway point."""
    change_day = STEADY_FROM_DAY + days
    cohort = simulate(n_patients, seed, scenario, fault_from_day=change_day)
    s0 = cohort.start_s
    baseline = frame_from_cohort(
        cohort, model, s0 + STEADY_FROM_DAY * DAY_S, s0 + change_day * DAY_S
    )
    window = frame_from_cohort(
        cohort, model, s0 + change_day * DAY_S, s0 + (change_day + days) * DAY_S
    )
    return baseline, window
