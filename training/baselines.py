"""Rule baselines the model must beat, computed on the same hold-out rows.

- NEWS2 ≥ 5 (Royal College of Physicians, National Early Warning Score 2, 2017; chart in
  docs/architecture.md §6), from the latest home readings, scored by the rule engine's shipped rule sets
  (models/rules: ``news2``, and ``news2-scale2`` for hypercapnic patients). :func:`news2`
  is an independent implementation of the chart, used when the rule engine is absent and to
  cross-check it (tests). Parameters a pathway does not measure at home (for example
  respiratory rate for most heart-failure kits) score 0, which is how a home NEWS2 behaves in
  practice. NEWS2 is not validated under 16 years; the paediatric slice shows it only for
  completeness.
- Heart failure: weight gain > 2 kg in 3 days (ESC 2021 heart-failure guideline patient advice;
  sensitivity ~9–20 % in Zhang et al., Eur J Heart Fail 2009;11:420–7).
- One threshold per vital sign, at the usual home follow-up alarm limits (SpO2 < 92 %,
  pulse > 110 /min, respiratory rate > 24 /min, temperature ≥ 38.0 °C, systolic ≤ 90 mmHg:
  the NEWS2 red-zone edges, and 38.0 °C as the febrile-neutropenia fever definition of
  Klastersky et al., ESMO 2016).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.features import FEATURE_INDEX, LATEST_LOOKBACK_S
from models.measurements import CONSCIOUSNESS, ON_OXYGEN
from training.simulator import Cohort

NEWS2_ALERT = 5
WEIGHT_GAIN_KG_3D = 2.0


@dataclass(frozen=True)
class ThresholdRule:
    name: str
    channel: str
    op: str  # "<", "<=", ">", ">="
    threshold: float

    def fires(self, value: np.ndarray) -> np.ndarray:
        v = np.asarray(value, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            out = {
                "<": v < self.threshold,
                "<=": v <= self.threshold,
                ">": v > self.threshold,
                ">=": v >= self.threshold,
            }[self.op]
        return out & ~np.isnan(v)

    def score(self, value: np.ndarray) -> np.ndarray:
        """A continuous score with the rule's direction (for AUROC); missing = lowest."""
        v = np.asarray(value, dtype=np.float64)
        signed = -v if self.op.startswith("<") else v
        return np.where(np.isnan(v), -np.inf, signed)


SINGLE_VITAL_RULES = (
    ThresholdRule("SpO2 < 92 %", "spo2", "<", 92.0),
    ThresholdRule("Pulse > 110 /min", "heart_rate", ">", 110.0),
    ThresholdRule("Respiratory rate > 24 /min", "respiratory_rate", ">", 24.0),
    ThresholdRule("Temperature ≥ 38.0 °C", "temperature", ">=", 38.0),
    ThresholdRule("Systolic BP ≤ 90 mmHg", "systolic_bp", "<=", 90.0),
)
NEWS2_CHANNELS = (
    "respiratory_rate",
    "spo2",
    ON_OXYGEN,
    "systolic_bp",
    "heart_rate",
    CONSCIOUSNESS,
    "temperature",
)


def latest_values(
    cohort: Cohort,
    patient: np.ndarray,
    time_s: np.ndarray,
    channels: tuple[str, ...] = NEWS2_CHANNELS,
    lookback_s: int = LATEST_LOOKBACK_S,
    times_out: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Latest reading per channel at or before each time, within the lookback; NaN if none.

    ``times_out``, when given, receives the time of each latest reading (-1 if none).
    """
    r = cohort.readings
    out: dict[str, np.ndarray] = {}
    for ch in channels:
        sel = r.channel == ch
        p, t, v = r.patient[sel], r.time_s[sel], r.value[sel]
        order = np.lexsort((t, p))
        p, t, v = p[order], t[order], v[order]
        span = np.int64(1) << np.int64(40)
        key = p * span + t
        idx = np.searchsorted(key, patient * span + time_s, side="right") - 1
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        ok &= (p[safe] == patient) if len(p) else np.zeros(len(patient), bool)
        ok &= (t[safe] >= time_s - lookback_s) if len(t) else ok
        out[ch] = np.where(ok, v[safe] if len(v) else np.nan, np.nan)
        if times_out is not None:
            times_out[ch] = np.where(ok, t[safe] if len(t) else -1, -1)
    return out


def _bands(value: np.ndarray, edges: list[tuple[float, float, int]]) -> np.ndarray:
    """Points for the first (low, high, points) band containing the value; NaN scores 0."""
    points = np.zeros(len(value))
    for lo, hi, pts in edges:
        points = np.where((value >= lo) & (value <= hi), pts, points)
    return points


def news2(values: dict[str, np.ndarray], scale2: np.ndarray) -> np.ndarray:
    """NEWS2 aggregate from latest values (RCP 2017 chart, docs/architecture.md §6)."""
    rr = values["respiratory_rate"]
    spo2 = values["spo2"]
    oxygen = np.nan_to_num(values[ON_OXYGEN], nan=0.0) > 0.5
    score = _bands(rr, [(-np.inf, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, np.inf, 3)])
    scale1_pts = _bands(spo2, [(-np.inf, 91, 3), (92, 93, 2), (94, 95, 1), (96, np.inf, 0)])
    scale2_air = _bands(spo2, [(-np.inf, 83, 3), (84, 85, 2), (86, 87, 1), (88, np.inf, 0)])
    scale2_o2 = _bands(
        spo2,
        [
            (-np.inf, 83, 3),
            (84, 85, 2),
            (86, 87, 1),
            (88, 92, 0),
            (93, 94, 1),
            (95, 96, 2),
            (97, np.inf, 3),
        ],
    )
    score = score + np.where(scale2, np.where(oxygen, scale2_o2, scale2_air), scale1_pts)
    score = score + np.where(oxygen, 2, 0)
    score = score + _bands(
        values["systolic_bp"], [(-np.inf, 90, 3), (91, 100, 2), (101, 110, 1), (220, np.inf, 3)]
    )
    score = score + _bands(
        values["heart_rate"],
        [(-np.inf, 40, 3), (41, 50, 1), (91, 110, 1), (111, 130, 2), (131, np.inf, 3)],
    )
    score = score + np.where(np.nan_to_num(values[CONSCIOUSNESS], nan=0.0) > 0.5, 3, 0)
    # Temperature bands are on 0.1 °C edges: 35.0 | 35.1–36.0 | 36.1–38.0 | 38.1–39.0 | 39.1.
    temp = np.round(values["temperature"], 1)
    score = score + _bands(
        temp, [(-np.inf, 35.0, 3), (35.05, 36.0, 1), (38.05, 39.0, 1), (39.05, np.inf, 2)]
    )
    return score.astype(np.float64)


def news2_rule_engine(
    values: dict[str, np.ndarray],
    times: dict[str, np.ndarray],
    time_s: np.ndarray,
    age_years: np.ndarray,
    scale2: np.ndarray,
) -> np.ndarray | None:
    """NEWS2 from the shipped rule sets of models/rules (``news2``, ``news2-scale2``), or None
    when the rule engine is not available."""
    try:
        from models.rules import ReadingsBatch, evaluate_batch, load_rule_set
    except ImportError:
        return None
    out = np.full(len(time_s), np.nan)
    for rule_set, rows in (("news2", ~scale2), ("news2-scale2", scale2)):
        idx = np.flatnonzero(rows)
        if len(idx) == 0:
            continue
        series = {}
        for ch in NEWS2_CHANNELS:
            ok = ~np.isnan(values[ch][idx])
            series[ch] = (np.flatnonzero(ok), times[ch][idx][ok], values[ch][idx][ok])
        batch = ReadingsBatch.from_long(time_s[idx], age_years[idx], series)
        result = evaluate_batch(load_rule_set(rule_set), batch)
        score = next(v for k, v in result.scores.items() if k.startswith("news2"))
        out[idx] = np.nan_to_num(score, nan=0.0)
    return out


@dataclass
class BaselineScores:
    """Per-row scores (for AUROC) and alerts (for sensitivity/PPV) of each baseline."""

    scores: dict[str, np.ndarray]
    alerts: dict[str, np.ndarray]
    applies: dict[str, np.ndarray]  # rows the rule is meant for (e.g. weight rule: HF only)
    news2_source: str = "training/baselines.py"


def baseline_scores(cohort: Cohort, X: np.ndarray, meta: object) -> BaselineScores:
    """Every baseline on the rows (X, meta) of ``cohort``."""
    patient = np.asarray(meta["patient"])  # type: ignore[index]
    time_s = np.asarray(meta["time_s"])  # type: ignore[index]
    pathway = np.asarray(meta["pathway"])  # type: ignore[index]
    times: dict[str, np.ndarray] = {}
    values = latest_values(cohort, patient, time_s, times_out=times)
    scale2 = np.array([p.hypercapnic for p in cohort.patients])[patient]
    age = np.asarray(meta["age_years"])  # type: ignore[index]
    engine = news2_rule_engine(values, times, time_s, age, scale2)
    news = engine if engine is not None else news2(values, scale2)
    scores: dict[str, np.ndarray] = {"NEWS2 ≥ 5": news}
    alerts: dict[str, np.ndarray] = {"NEWS2 ≥ 5": news >= NEWS2_ALERT}
    everyone = np.ones(len(patient), dtype=bool)
    applies: dict[str, np.ndarray] = {"NEWS2 ≥ 5": everyone}
    gain = X[:, FEATURE_INDEX["weight_kg_change_3d"]]
    name = "Weight gain > 2 kg in 3 days"
    scores[name] = np.where(np.isnan(gain), -np.inf, gain)
    alerts[name] = np.nan_to_num(gain, nan=-np.inf) > WEIGHT_GAIN_KG_3D
    applies[name] = pathway == "heart-failure"
    any_vital = np.zeros(len(patient), dtype=bool)
    for rule in SINGLE_VITAL_RULES:
        scores[rule.name] = rule.score(values[rule.channel])
        alerts[rule.name] = rule.fires(values[rule.channel])
        applies[rule.name] = everyone
        any_vital |= alerts[rule.name]
    scores["Any single-vital threshold"] = any_vital.astype(np.float64)
    alerts["Any single-vital threshold"] = any_vital
    applies["Any single-vital threshold"] = everyone
    source = (
        "models/rules (news2, news2-scale2)" if engine is not None else ("training/baselines.py")
    )
    return BaselineScores(scores, alerts, applies, source)
