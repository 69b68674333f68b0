"""Monitoring windows from training's cohort simulator, scored by a tiny trained ONNX model.

Scenarios for the honest-detection tests (issue 7 §6), all built on the same simulator:
unchanged (another seed), population shift (an older population with more heart failure: the
service rolled out to a cardiology unit), device faults (a pulse-oximeter firmware reading 3
points low; a scale switching to pounds mid-window).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.features import CHANNEL_INDEX, DAY_S, HISTORY_CHANNELS, compute_features
from models.runtime import OnnxRiskModel
from monitoring.data import MonitoringFrame
from training.simulator import Cohort, simulate_cohort, snapshot_dataset

POUNDS_PER_KG = 2.20462
ORGANISATIONS = ("974557746", "983974899")  # two health trusts (synthetic organisation numbers)
SIM_DAYS = 21
OLDER_MORE_HEART_FAILURE = ("copd", "heart-failure", "heart-failure", "heart-failure", "oncology")


def with_device_fault(
    cohort: Cohort, *, spo2_offset: float = 0.0, weight_pounds_from_day: int | None = None
) -> Cohort:
    """The same cohort as a faulty device would have reported it."""
    readings = cohort.readings
    value = readings.value.copy()
    if spo2_offset:
        value[readings.channel == "spo2"] += spo2_offset
    if weight_pounds_from_day is not None:
        switched = (readings.channel == "weight") & (
            readings.time_s >= cohort.start_s + weight_pounds_from_day * DAY_S
        )
        value[switched] *= POUNDS_PER_KG
    return replace(cohort, readings=replace(readings, value=value))


def frame_from_cohort(cohort: Cohort, model: OnnxRiskModel) -> MonitoringFrame:
    """What the service would store per assessment: features, score, pathway, organisation,
    time, outcome and the latest raw reading of each channel."""
    history = cohort.history()
    X, y, meta = snapshot_dataset(cohort, history)
    patient = meta["patient"].to_numpy()
    time_s = meta["time_s"].to_numpy()
    first = np.full(len(patient), cohort.start_s, dtype=np.int64)
    _, context = compute_features(
        history, patient, time_s, meta["age_years"].to_numpy(), first_reading_s=first
    )
    return MonitoringFrame(
        X=X,
        probability=model.predict(X).probability,
        pathway=meta["pathway"].to_numpy(dtype=str),
        organisation=np.asarray(ORGANISATIONS)[patient % len(ORGANISATIONS)],
        scored_at=time_s,
        outcome=y.astype(np.float64),
        raw={ch: context.latest[:, CHANNEL_INDEX[ch]] for ch in HISTORY_CHANNELS},
    )


def simulated_window(
    model: OnnxRiskModel,
    n_patients: int,
    seed: int,
    scenario: str = "unchanged",
) -> MonitoringFrame:
    if scenario == "population":
        cohort = simulate_cohort(n_patients, SIM_DAYS, seed, pathways=OLDER_MORE_HEART_FAILURE)
    else:
        cohort = simulate_cohort(n_patients, SIM_DAYS, seed)
    if scenario == "device-spo2":
        cohort = with_device_fault(cohort, spo2_offset=-3.0)
    elif scenario == "device-weight":
        cohort = with_device_fault(cohort, weight_pounds_from_day=SIM_DAYS // 2)
    elif scenario not in ("unchanged", "population"):
        raise ValueError(f"unknown scenario {scenario}")
    return frame_from_cohort(cohort, model)
