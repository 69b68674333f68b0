"""The feature vector: defined once, used by training, serving and drift monitoring.

Features are computed from a long-format history (one row per reading) as of a reference
time. Only readings at or before the reference time count, so replaying a history gives the
same vectors, and a device that uploads a two-day backlog is scored as it would have been live.

Missing data is never a silent zero: a feature that cannot be computed is NaN, the model has
an explicit "missing" bin for it, and the explanation says so ("no SpO2 for 3 days").

One function, :func:`compute_features`, serves one patient (the ingestion path) and many
(training snapshots, cohort re-scoring); it is vectorised with numpy throughout.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from models.measurements import SYMPTOM_SCORE

HOUR_S = 3600
DAY_S = 24 * HOUR_S
FEATURE_SPEC_VERSION = "2"  # 2: 7-day trends (weight, pulse, blood pressure), temperature SD

# Windows, in seconds, shared by every feature so the definitions read alike.
LATEST_LOOKBACK_S = 3 * DAY_S  # a reading older than this no longer counts as "latest"
BASELINE_WINDOW_S = 14 * DAY_S  # personal baseline: median over the past 14 days …
BASELINE_GAP_S = 1 * DAY_S  # … excluding the last 24 h, so an acute change does not hide itself
BASELINE_MIN_READINGS = 3
TREND_WINDOW_S = 7 * DAY_S  # least-squares slope over the last 7 days …
TREND_MIN_READINGS = 3  # … from at least 3 readings spanning at least 2 days
TREND_MIN_SPAN_S = 2 * DAY_S
SPREAD_WINDOW_S = 3 * DAY_S  # spread (SD) of the last 72 h: a swinging temperature
SPREAD_MIN_READINGS = 2
HOURS_SINCE_LAST_CAP_H = 14 * 24.0
_NEVER = np.iinfo(np.int64).max // 4

# Measurements the model looks at, in the order their columns appear in history arrays.
# ``symptom_score`` is the pathway questionnaire total (0–10 points).
HISTORY_CHANNELS: tuple[str, ...] = (
    "spo2",
    "heart_rate",
    "respiratory_rate",
    "temperature",
    "systolic_bp",
    "weight",
    SYMPTOM_SCORE,
)
CHANNEL_INDEX = {name: i for i, name in enumerate(HISTORY_CHANNELS)}

# Age bands follow the paediatric early-warning age groups, then adult groups used in
# evaluation slices: <1, 1–4, 5–11, 12–17, 18–64, 65–79, ≥80 years.
AGE_BAND_EDGES_YEARS = (1.0, 5.0, 12.0, 18.0, 65.0, 80.0)
AGE_BAND_LABELS = ("0", "1-4", "5-11", "12-17", "18-64", "65-79", "80+")


@dataclass(frozen=True)
class FeatureDef:
    """One model input: how it is computed and how it reads in an explanation."""

    name: str
    channel: str | None  # history channel it derives from (None: patient-level)
    # latest | delta_baseline | change_1d | change_3d | slope_7d | sd_3d | missed_days |
    # hours_since | age_band
    kind: str
    unit: str  # display unit
    label_nb: str
    label_en: str
    # Clinically expected direction of risk as the value rises: +1 more risk, -1 less, 0 either.
    # Training uses it as a monotonic constraint; behavioural tests check it.
    risk_direction: int
    # Where physiology is clear only above a value (a temperature above normal, a pulse or a
    # respiratory rate above resting), the shape must not fall above it even though the latest
    # value is risky at both ends: training projects the fitted shape there (monotone from here).
    never_falls_above: float | None = None


def _vital(
    channel: str,
    stem: str,
    unit: str,
    nb: str,
    en: str,
    up: int,
    latest_up: int = 0,
    latest_never_falls_above: float | None = None,
) -> list[FeatureDef]:
    """The four features of a vital sign; ``up`` is the risk direction of a rising value.

    ``latest_up`` constrains the latest value itself; most vitals are risky at both ends (0),
    and ``latest_never_falls_above`` then says from where a rise may only add risk.
    """
    return [
        FeatureDef(
            f"{stem}_latest",
            channel,
            "latest",
            unit,
            nb,
            en,
            latest_up,
            latest_never_falls_above,
        ),
        FeatureDef(
            f"{stem}_delta_baseline",
            channel,
            "delta_baseline",
            unit,
            f"{nb}, avvik fra personlig baseline",
            f"{en}, deviation from personal baseline",
            up,
        ),
        FeatureDef(
            f"{stem}_change_1d",
            channel,
            "change_1d",
            unit,
            f"{nb}, endring siste døgn",
            f"{en}, change over 1 day",
            up,
        ),
        FeatureDef(
            f"{stem}_change_3d",
            channel,
            "change_3d",
            unit,
            f"{nb}, endring siste 3 døgn",
            f"{en}, change over 3 days",
            up,
        ),
    ]


FEATURES: tuple[FeatureDef, ...] = (
    # A lower latest SpO2 never lowers the risk: NEWS2's SpO2 scale 1 is monotone (RCP 2017).
    # Unconstrained, a model learns that very low single readings are often oximeter artefacts
    # and discounts them, which no clinician would accept (found by the behavioural tests).
    *_vital("spo2", "spo2_pct", "%", "SpO2", "SpO2", -1, latest_up=-1),
    # Pulse above 60 /min, respiratory rate above 12 /min and temperature above 37.0 °C: a rise
    # never lowers the risk (NEWS2 bands, RCP 2017; fever in neutropenia, ESMO 2016). Below
    # those values the shape is free (bradycardia, bradypnoea and hypothermia are risky too).
    *_vital("heart_rate", "heart_rate_bpm", "/min", "Puls", "Heart rate", +1, 0, 60.0),
    *_vital(
        "respiratory_rate",
        "respiratory_rate_per_min",
        "/min",
        "Respirasjonsfrekvens",
        "Respiratory rate",
        +1,
        0,
        12.0,
    ),
    *_vital("temperature", "temperature_c", "°C", "Temperatur", "Temperature", +1, 0, 37.0),
    *_vital(
        "systolic_bp",
        "systolic_bp_mmhg",
        "mmHg",
        "Systolisk blodtrykk",
        "Systolic blood pressure",
        -1,
    ),
    FeatureDef(
        "weight_kg_delta_baseline",
        "weight",
        "delta_baseline",
        "kg",
        "Vekt, avvik fra personlig baseline",
        "Weight, deviation from personal baseline",
        +1,
    ),
    FeatureDef(
        "weight_kg_change_1d",
        "weight",
        "change_1d",
        "kg",
        "Vektendring siste døgn",
        "Weight change over 1 day",
        +1,
    ),
    FeatureDef(
        "weight_kg_change_3d",
        "weight",
        "change_3d",
        "kg",
        "Vektendring siste 3 døgn",
        "Weight change over 3 days",
        +1,
    ),
    # Prodromes of heart-failure decompensation and of post-operative infection (issue 11):
    # weight creeping up over a week (Chaudhry 2007: gain starts about a week before admission),
    # the pulse trend (LINK-HF, Stehlik 2020), the blood-pressure trend, and a temperature that
    # swings (spiking fevers of an abscess or anastomotic leak, Hyman 2007). Slopes are per day
    # so a missed day does not change their scale; they survive a device's constant bias.
    FeatureDef(
        "weight_kg_slope_7d",
        "weight",
        "slope_7d",
        "kg/d",
        "Vekt, trend siste 7 døgn",
        "Weight, trend over 7 days",
        +1,
    ),
    FeatureDef(
        "heart_rate_bpm_slope_7d",
        "heart_rate",
        "slope_7d",
        "/min/d",
        "Puls, trend siste 7 døgn",
        "Heart rate, trend over 7 days",
        +1,
    ),
    FeatureDef(
        "systolic_bp_mmhg_slope_7d",
        "systolic_bp",
        "slope_7d",
        "mmHg/d",
        "Systolisk blodtrykk, trend siste 7 døgn",
        "Systolic blood pressure, trend over 7 days",
        0,  # falls in decompensation and sepsis, can rise with fluid: either way
    ),
    FeatureDef(
        "temperature_c_sd_3d",
        "temperature",
        "sd_3d",
        "°C",
        "Temperatur, svingning siste 3 døgn (SD)",
        "Temperature, swing over 3 days (SD)",
        +1,
    ),
    FeatureDef(
        "symptom_score_latest",
        SYMPTOM_SCORE,
        "latest",
        "points",
        "Symptomskår (0–10)",
        "Symptom score (0–10)",
        +1,
    ),
    FeatureDef(
        "symptom_score_change_3d",
        SYMPTOM_SCORE,
        "change_3d",
        "points",
        "Symptomskår, endring siste 3 døgn",
        "Symptom score, change over 3 days",
        +1,
    ),
    FeatureDef(
        "missed_measurement_days_3d",
        None,
        "missed_days",
        "days",
        "Dager uten målinger siste 3 døgn",
        "Days without measurements in the last 3 days",
        +1,
    ),
    FeatureDef(
        "hours_since_last_measurement_h",
        None,
        "hours_since",
        "h",
        "Timer siden siste måling",
        "Hours since last measurement",
        +1,
    ),
    FeatureDef("age_band", None, "age_band", "band", "Aldersgruppe", "Age band", 0),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
N_FEATURES = len(FEATURES)


def feature_spec() -> dict[str, object]:
    """The feature contract as plain data: stored in every artifact manifest."""
    return {
        "version": FEATURE_SPEC_VERSION,
        "channels": list(HISTORY_CHANNELS),
        "windows_s": {
            "latest_lookback": LATEST_LOOKBACK_S,
            "baseline_window": BASELINE_WINDOW_S,
            "baseline_gap": BASELINE_GAP_S,
            "baseline_min_readings": BASELINE_MIN_READINGS,
            "trend_window": TREND_WINDOW_S,
            "trend_min_readings": TREND_MIN_READINGS,
            "trend_min_span": TREND_MIN_SPAN_S,
            "spread_window": SPREAD_WINDOW_S,
            "spread_min_readings": SPREAD_MIN_READINGS,
        },
        "age_band_edges_years": list(AGE_BAND_EDGES_YEARS),
        "features": [
            {"name": f.name, "channel": f.channel, "kind": f.kind, "unit": f.unit} for f in FEATURES
        ],
    }


def feature_spec_hash() -> str:
    """sha256 of the feature contract; an artifact built on another contract is refused."""
    canonical = json.dumps(feature_spec(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class History:
    """Readings in long format, one row each. Times are integer epoch seconds."""

    patient: np.ndarray  # int64 patient index (0..n_patients-1)
    channel: np.ndarray  # int64 index into HISTORY_CHANNELS
    time_s: np.ndarray  # int64
    value: np.ndarray  # float64, canonical unit

    @classmethod
    def from_rows(cls, rows: list[tuple[int, str, int, float]]) -> History:
        """Build from (patient index, channel name, epoch seconds, value); unknown channels drop."""
        kept = [r for r in rows if r[1] in CHANNEL_INDEX]
        return cls(
            patient=np.fromiter((r[0] for r in kept), dtype=np.int64, count=len(kept)),
            channel=np.fromiter(
                (CHANNEL_INDEX[r[1]] for r in kept), dtype=np.int64, count=len(kept)
            ),
            time_s=np.fromiter((r[2] for r in kept), dtype=np.int64, count=len(kept)),
            value=np.fromiter((r[3] for r in kept), dtype=np.float64, count=len(kept)),
        )


@dataclass
class FeatureContext:
    """Values behind the vector that an explanation needs, one row per query.

    ``latest``, ``baseline`` and ``last_time_s`` are [n_queries, n_channels]; NaN or -1 when absent.
    """

    latest: np.ndarray
    baseline: np.ndarray
    last_time_s: np.ndarray
    as_of_s: np.ndarray

    def row(self, i: int) -> dict[str, dict[str, float | None]]:
        def clean(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        return {
            ch: {
                "latest": clean(self.latest[i, c]),
                "baseline": clean(self.baseline[i, c]),
                "hours_since_last": (
                    None
                    if self.last_time_s[i, c] < 0
                    else float((self.as_of_s[i] - self.last_time_s[i, c]) / HOUR_S)
                ),
            }
            for ch, c in CHANNEL_INDEX.items()
        }


def age_band(age_years: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(AGE_BAND_EDGES_YEARS), age_years, side="right").astype(
        np.float64
    )


def _ragged_median(values: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Median of values[starts[i]:stops[i]] for every i, without a Python loop."""
    lengths = stops - starts
    out = np.full(len(starts), np.nan)
    nonempty = lengths > 0
    if not nonempty.any():
        return out
    idx_starts, idx_lengths = starts[nonempty], lengths[nonempty]
    segment = np.repeat(np.arange(len(idx_starts)), idx_lengths)
    offsets = np.arange(idx_lengths.sum()) - np.repeat(
        np.cumsum(idx_lengths) - idx_lengths, idx_lengths
    )
    gathered = values[np.repeat(idx_starts, idx_lengths) + offsets]
    order = np.lexsort((gathered, segment))
    sorted_vals = gathered[order]
    seg_start = np.cumsum(idx_lengths) - idx_lengths
    lo = sorted_vals[seg_start + (idx_lengths - 1) // 2]
    hi = sorted_vals[seg_start + idx_lengths // 2]
    out[nonempty] = (lo + hi) / 2.0
    return out


def compute_features(
    history: History,
    query_patient: np.ndarray,
    query_time_s: np.ndarray,
    age_years: np.ndarray,
    first_reading_s: np.ndarray | None = None,
) -> tuple[np.ndarray, FeatureContext]:
    """Feature matrix [n_queries, N_FEATURES] (float64, NaN = missing) and its context.

    ``query_patient[i]`` is a patient index into ``history.patient``; ``query_time_s[i]`` the
    reference time; ``age_years[i]`` the patient's age at that time. ``first_reading_s`` (per
    query) marks enrolment: days before it do not count as missed (default: first reading seen).
    """
    query_patient = np.asarray(query_patient, dtype=np.int64)
    query_time_s = np.asarray(query_time_s, dtype=np.int64)
    n_q, n_ch = len(query_patient), len(HISTORY_CHANNELS)

    # Sort readings by (patient, channel, time) and address them by a composite key, so every
    # window lookup is one searchsorted over the whole history.
    group = history.patient * n_ch + history.channel
    order = np.lexsort((history.time_s, group))
    g_sorted = group[order]
    # One sentinel reading in no patient's group keeps every index valid on an empty history.
    t_sorted = np.append(history.time_s[order], 0)
    v_sorted = np.append(history.value[order], np.nan)
    g_sorted = np.append(g_sorted, -1)
    # Time span fits in 2**40 s; groups above it keep keys exact in int64.
    span = np.int64(1) << np.int64(40)
    key = g_sorted * span + t_sorted
    sentinel_first = np.argsort(key, kind="stable")  # the sentinel sorts first (group -1)
    key, t_sorted, v_sorted = (
        key[sentinel_first],
        t_sorted[sentinel_first],
        v_sorted[sentinel_first],
    )

    q_groups = query_patient[:, None] * n_ch + np.arange(n_ch)[None, :]  # [n_q, n_ch]
    group_start = np.searchsorted(key, q_groups * span, side="left")

    def upto(t: np.ndarray) -> np.ndarray:
        """Index one past the last reading at or before t, per (query, channel)."""
        found: np.ndarray = np.searchsorted(key, q_groups * span + t[:, None], side="right")
        return found

    def value_before(end: np.ndarray, not_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Last reading in [group_start, end) if its time >= not_before; else NaN / -1."""
        idx = end - 1
        ok = idx >= group_start
        safe = np.where(ok, idx, 0)
        times = np.where(ok, t_sorted[safe], -1)
        ok &= times >= not_before[:, None]
        return np.where(ok, v_sorted[safe], np.nan), np.where(ok, times, -1)

    t = query_time_s
    end_now = upto(t)
    latest, _ = value_before(end_now, t - LATEST_LOOKBACK_S)
    _, last_time_any = value_before(end_now, np.full(n_q, -_NEVER))
    # "change over N days": latest minus the last reading at least N days older, looked for in
    # a window of the same length before that (so a week-old value does not pass for 1 day).
    before_1d, _ = value_before(upto(t - DAY_S), t - 3 * DAY_S)
    before_3d, _ = value_before(upto(t - 3 * DAY_S), t - 7 * DAY_S)

    base_start = np.searchsorted(key, q_groups * span + (t - BASELINE_WINDOW_S)[:, None], "left")
    base_stop = np.searchsorted(key, q_groups * span + (t - BASELINE_GAP_S)[:, None], "left")
    baseline = _ragged_median(v_sorted, base_start.ravel(), base_stop.ravel()).reshape(n_q, n_ch)
    baseline[(base_stop - base_start) < BASELINE_MIN_READINGS] = np.nan

    # Window sums by prefix sums over the sorted readings (time in days from the first reading,
    # so squares stay small): slope and spread without a Python loop over patients.
    origin = t_sorted[1:].min() if len(t_sorted) > 1 else 0
    t_days = np.where(np.isnan(v_sorted), 0.0, (t_sorted - origin) / DAY_S)
    v_clean = np.nan_to_num(v_sorted)
    present = (~np.isnan(v_sorted)).astype(np.float64)

    def prefix(a: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.r_[0.0, np.cumsum(a)]
        return out

    sums = {
        "n": prefix(present),
        "t": prefix(t_days),
        "v": prefix(v_clean),
        "tt": prefix(t_days * t_days),
        "tv": prefix(t_days * v_clean),
        "vv": prefix(v_clean * v_clean),
    }

    def window(length_s: int) -> tuple[np.ndarray, np.ndarray]:
        lo = np.searchsorted(key, q_groups * span + (t - length_s)[:, None], side="right")
        return lo, end_now

    def window_sums(lo: np.ndarray, hi: np.ndarray) -> dict[str, np.ndarray]:
        return {k: a[hi] - a[lo] for k, a in sums.items()}

    lo7, hi7 = window(TREND_WINDOW_S)
    w7 = window_sums(lo7, hi7)
    first_t = np.where(hi7 > lo7, t_sorted[np.minimum(lo7, len(t_sorted) - 1)], 0)
    last_t = np.where(hi7 > lo7, t_sorted[np.maximum(hi7 - 1, 0)], 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sxx = w7["tt"] - w7["t"] ** 2 / w7["n"]
        sxy = w7["tv"] - w7["t"] * w7["v"] / w7["n"]
        slope = sxy / sxx
    enough = (w7["n"] >= TREND_MIN_READINGS) & ((last_t - first_t) >= TREND_MIN_SPAN_S)
    # Rounded: prefix sums over a cohort and over one patient differ in the last bits, and
    # training and serving must see the same value (tests/training/test_train_serve_parity.py).
    slope_7d = np.round(np.where(enough & (sxx > 1e-9), slope, np.nan), 4)
    lo3, hi3 = window(SPREAD_WINDOW_S)
    w3 = window_sums(lo3, hi3)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (w3["vv"] - w3["v"] ** 2 / w3["n"]) / (w3["n"] - 1)
    sd_3d = np.round(
        np.where(w3["n"] >= SPREAD_MIN_READINGS, np.sqrt(np.maximum(var, 0.0)), np.nan), 4
    )
    X = np.full((n_q, N_FEATURES), np.nan)
    for j, f in enumerate(FEATURES):
        if f.channel is None:
            continue
        c = CHANNEL_INDEX[f.channel]
        if f.kind == "latest":
            X[:, j] = latest[:, c]
        elif f.kind == "delta_baseline":
            X[:, j] = latest[:, c] - baseline[:, c]
        elif f.kind == "change_1d":
            X[:, j] = latest[:, c] - before_1d[:, c]
        elif f.kind == "change_3d":
            X[:, j] = latest[:, c] - before_3d[:, c]
        elif f.kind == "slope_7d":
            X[:, j] = slope_7d[:, c]
        elif f.kind == "sd_3d":
            X[:, j] = sd_3d[:, c]

    # Adherence: any reading at all, across channels.
    last_any = last_time_any.max(axis=1)
    has_any = last_any >= 0
    hours = np.where(has_any, (t - last_any) / HOUR_S, np.nan)
    X[:, FEATURE_INDEX["hours_since_last_measurement_h"]] = np.minimum(
        hours, HOURS_SINCE_LAST_CAP_H
    )

    if first_reading_s is None:
        first_per_patient = np.full(int(query_patient.max(initial=0)) + 1, _NEVER)
        known = history.patient < len(first_per_patient)
        np.minimum.at(first_per_patient, history.patient[known], history.time_s[known])
        first_any = first_per_patient[query_patient]
    else:
        first_any = np.asarray(first_reading_s, dtype=np.int64)
    missed = np.zeros(n_q)
    for day in range(3):
        win_end = t - day * DAY_S
        win_start = win_end - DAY_S
        counted = win_start >= first_any  # days before enrolment are not "missed"
        n_in = (
            upto(win_end) - np.searchsorted(key, q_groups * span + win_start[:, None], side="right")
        ).sum(axis=1)
        missed += counted & (n_in == 0)
    X[:, FEATURE_INDEX["missed_measurement_days_3d"]] = np.where(has_any, missed, np.nan)
    X[:, FEATURE_INDEX["age_band"]] = age_band(np.asarray(age_years, dtype=np.float64))

    context = FeatureContext(latest=latest, baseline=baseline, last_time_s=last_time_any, as_of_s=t)
    return X, context


def patient_day_times(
    reading_patient: np.ndarray,
    reading_time_s: np.ndarray,
    day_patient: np.ndarray,
    day_start_s: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The reference time of each patient-day: the day's newest reading, else its last second.

    One definition for every place that turns a follow-up into one row per patient-day: the
    training snapshots (and so the model's reference sample) and the drift windows built from
    the service's store. It is when the service scores a patient-day: at the last reading that
    arrived that day, or at the end of a day without readings (the nightly re-score), so days
    without measurements are rows too and ``hours_since_last_measurement_h`` means the same on
    both sides of a drift comparison. Returns (reference time, had a reading that day).
    """
    reading_patient = np.asarray(reading_patient, dtype=np.int64)
    reading_time_s = np.asarray(reading_time_s, dtype=np.int64)
    day_patient = np.asarray(day_patient, dtype=np.int64)
    day_start_s = np.asarray(day_start_s, dtype=np.int64)
    end_of_day = day_start_s + DAY_S - 1
    if reading_patient.size == 0:
        return end_of_day, np.zeros(len(day_start_s), dtype=bool)
    span = np.int64(1) << np.int64(40)
    key = np.sort(reading_patient * span + reading_time_s)
    found = np.searchsorted(key, day_patient * span + end_of_day, side="right") - 1
    safe = np.maximum(found, 0)
    same_day = (found >= 0) & (key[safe] >= day_patient * span + day_start_s)
    newest = key[safe] - day_patient * span
    return np.where(same_day, newest, end_of_day), same_day


def window_patient_days(
    first_reading_s: np.ndarray, last_reading_s: np.ndarray, start_s: int, end_s: int
) -> tuple[np.ndarray, np.ndarray]:
    """(patient index, day start) of every patient-day that may fall in [start_s, end_s).

    Days are UTC calendar days from the day of a patient's first reading to the day of the last
    one (a patient is in follow-up from the first measurement to the last). The caller keeps the
    rows whose :func:`patient_day_times` reference time lies in the window.
    """
    first_day = np.asarray(first_reading_s, dtype=np.int64) // DAY_S * DAY_S
    last_day = np.asarray(last_reading_s, dtype=np.int64) // DAY_S * DAY_S
    lo = np.maximum(first_day, int(start_s) // DAY_S * DAY_S)
    hi = np.minimum(last_day, (int(end_s) - 1) // DAY_S * DAY_S)
    counts = np.where(hi >= lo, (hi - lo) // DAY_S + 1, 0).astype(np.int64)
    patient = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    offsets = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(counts) - counts, counts
    )
    return patient, np.repeat(lo, counts) + offsets * DAY_S
