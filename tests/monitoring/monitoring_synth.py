"""Small synthetic home-follow-up windows for the monitoring tests (until training's simulator).

Each patient has a pathway, an age, personal baselines and daily readings with missed days; a
tenth deteriorate over their last days. Features come from the real
``models.features.compute_features``, so the windows have the feature vector's true shape
(NaN for missing, deltas from personal baselines). Scenarios: unchanged, an older population
with more heart failure, a pulse oximeter reading 3 points low, a scale switching to pounds.
"""

from __future__ import annotations

import numpy as np

from models.features import DAY_S, FEATURE_INDEX, History, compute_features
from monitoring.config import DriftConfig
from monitoring.data import MonitoringFrame
from monitoring.drift import DriftReportResult, run_drift_report

T0_S = 1_767_225_600  # 2026-01-01T00:00:00Z
PATHWAYS = ("copd", "heart-failure", "post-operative", "oncology")
BASE_PATHWAY_WEIGHTS = (0.35, 0.25, 0.2, 0.2)
ORGANISATIONS = ("974557746", "983974899")
AGE_MEAN = {"copd": 70.0, "heart-failure": 74.0, "post-operative": 58.0, "oncology": 62.0}
CHANNELS = {
    "copd": ("spo2", "heart_rate", "respiratory_rate", "temperature", "symptom_score"),
    "heart-failure": ("weight", "heart_rate", "systolic_bp", "spo2", "symptom_score"),
    "post-operative": ("temperature", "heart_rate", "systolic_bp", "spo2", "symptom_score"),
    "oncology": ("temperature", "heart_rate", "spo2", "symptom_score"),
}
# (population mean, between-patient sd, within-patient daily sd, change when deteriorating)
VITALS = {
    "spo2": (95.5, 1.8, 0.9, -4.0),
    "heart_rate": (76.0, 10.0, 4.0, 15.0),
    "respiratory_rate": (17.0, 2.5, 1.2, 5.0),
    "temperature": (36.8, 0.25, 0.2, 1.3),
    "systolic_bp": (132.0, 14.0, 6.0, -15.0),
    "weight": (82.0, 16.0, 0.4, 3.0),
    "symptom_score": (2.5, 1.2, 0.7, 3.0),
}
QUERY_DAYS = 3  # each patient is scored at the end of each of the last three days
N_REFERENCE_PATIENTS = 2000
N_CURRENT_PATIENTS = 400
WINDOW = {"window_start": T0_S, "window_end": T0_S + 30 * DAY_S}


def report(
    reference: MonitoringFrame, current: MonitoringFrame, config: DriftConfig, **kwargs: object
) -> DriftReportResult:
    """run_drift_report over the whole synthetic window with test defaults."""
    args = {**WINDOW, "model_version": "test-1", "pathway": None, "organisation": None, **kwargs}
    return run_drift_report(reference, current, config, **args)  # type: ignore[arg-type]


def simulate_window(
    n_patients: int,
    seed: int,
    *,
    days: int = 14,
    start_s: int = T0_S,
    age_shift_years: float = 0.0,
    pathway_weights: tuple[float, ...] = BASE_PATHWAY_WEIGHTS,
    spo2_offset: float = 0.0,
    weight_pounds_from_day: int | None = None,
) -> MonitoringFrame:
    rng = np.random.default_rng(seed)
    pathway = rng.choice(PATHWAYS, size=n_patients, p=np.asarray(pathway_weights))
    organisation = rng.choice(ORGANISATIONS, size=n_patients)
    age = np.array([AGE_MEAN[p] for p in pathway]) + rng.normal(0, 9, n_patients) + age_shift_years
    age = np.clip(age, 19, 99)
    risk_boost = np.where(pathway == "heart-failure", 0.05, 0.0) + np.clip(age - 70, 0, None) / 400
    deteriorates = rng.random(n_patients) < 0.08 + risk_boost
    onset_day = days - rng.integers(1, 4, n_patients)

    rows_p, rows_c, rows_t, rows_v = [], [], [], []
    channel_names = list(VITALS)
    for i in range(n_patients):
        for name in CHANNELS[str(pathway[i])]:
            mean, between, within, change = VITALS[name]
            baseline = mean + rng.normal(0, between)
            if name == "spo2" and pathway[i] == "copd":
                baseline -= 2.5
            measured = rng.random(days) < 0.85
            day = np.nonzero(measured)[0]
            values = baseline + rng.normal(0, within, day.size)
            if deteriorates[i]:
                ramp = np.clip((day - onset_day[i] + 1) / 2.0, 0, 1)
                values = values + change * ramp
            if name == "spo2":
                values = np.minimum(np.round(values), 100.0) + spo2_offset
            if name == "weight" and weight_pounds_from_day is not None:
                values = np.where(day >= weight_pounds_from_day, values * 2.20462, values)
            if name == "symptom_score":
                values = np.clip(np.round(values), 0, 10)
            times = start_s + day * DAY_S + rng.integers(7 * 3600, 11 * 3600, day.size)
            rows_p.append(np.full(day.size, i))
            rows_c.append(np.full(day.size, channel_names.index(name)))
            rows_t.append(times)
            rows_v.append(values)
    # History channel indices follow models.features.HISTORY_CHANNELS, not VITALS' order.
    from models.features import CHANNEL_INDEX

    remap = np.array([CHANNEL_INDEX[c] for c in channel_names])
    history = History(
        patient=np.concatenate(rows_p).astype(np.int64),
        channel=remap[np.concatenate(rows_c)].astype(np.int64),
        time_s=np.concatenate(rows_t).astype(np.int64),
        value=np.concatenate(rows_v).astype(np.float64),
    )
    query_patient = np.repeat(np.arange(n_patients), QUERY_DAYS)
    query_day = np.tile(np.arange(days - QUERY_DAYS, days), n_patients)
    query_time = start_s + query_day * DAY_S + 20 * 3600
    X, context = compute_features(
        history,
        query_patient,
        query_time,
        age[query_patient],
        first_reading_s=np.full(query_patient.size, start_s),
    )
    outcome = (deteriorates[query_patient] & (query_day >= onset_day[query_patient] - 1)).astype(
        np.float64
    )
    return MonitoringFrame(
        X=X,
        probability=toy_probability(X),
        pathway=pathway[query_patient],
        organisation=organisation[query_patient],
        scored_at=query_time,
        outcome=outcome,
        raw={c: context.latest[:, CHANNEL_INDEX[c]] for c in channel_names},
        patient=np.char.add(f"s{seed}-", query_patient.astype(str)),
    )


def toy_probability(X: np.ndarray) -> np.ndarray:
    """A stand-in risk model: a logistic score on a few deviations (NaN counts as normal)."""

    def col(name: str) -> np.ndarray:
        return np.nan_to_num(X[:, FEATURE_INDEX[name]])

    logit = (
        -3.0
        - 0.6 * col("spo2_pct_delta_baseline")
        + 0.08 * col("heart_rate_bpm_delta_baseline")
        + 1.2 * col("temperature_c_delta_baseline")
        + 0.6 * col("weight_kg_change_3d")
        + 0.4 * col("symptom_score_change_3d")
        + 0.2 * col("age_band")
    )
    return 1.0 / (1.0 + np.exp(-logit))
