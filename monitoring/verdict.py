"""The verdict of a drift comparison: which features moved beyond chance, by how much, since when,
where, and what kind of change it most likely is.

Pure numpy/scipy on two :class:`~monitoring.data.MonitoringFrame`s (reference and current, built
by the same patient-day definition). Every number that decides the verdict is in the returned
:class:`Comparison`, so a report can show why it says what it says.

The steps:

1. Size: patients and patient-days of the window. Below ``min_window_patients`` or
   ``min_window_patient_days`` there is no verdict (:class:`InsufficientDataError`); a feature
   that too few patients measured is "not tested" and says so.
2. Pathway mix: the reference is reweighted to the window's pathway mix, so a window with more
   heart failure is compared with heart-failure-like reference rows. A changed mix is a *note*,
   never drift by itself.
3. Thresholds: from the null on the reference at the window's effective size
   (:mod:`monitoring.stats`), family-wise ``alpha`` over all features and the prediction.
4. A feature has drifted when its distance is over its threshold *and* at least the smallest
   effect worth reporting (``min_effect``): with big windows, chance is small and a trivial
   shift would otherwise pass.
5. Verdict and severity from effect sizes and the number of drifted features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models.features import DAY_S, FEATURES
from monitoring.config import DriftConfig
from monitoring.data import MonitoringFrame
from monitoring.stats import calibrate, distance, distribution_design_effect

Verdict = Literal["ok", "warning", "drift"]
Severity = Literal["none", "low", "moderate", "high"]
Kind = Literal["device-or-unit", "population", "adherence", "model-output", "unclear"]
PREDICTION = "probability"
_CHANNEL = {f.name: f.channel for f in FEATURES}
_KIND = {f.name: f.kind for f in FEATURES}
ADHERENCE_FEATURES = frozenset({"missed_measurement_days_3d", "hours_since_last_measurement_h"})
POPULATION_FEATURES = frozenset({"age_band"})


class InsufficientDataError(ValueError):
    """The window has too few patients or patient-days for a verdict that means anything."""


@dataclass(frozen=True)
class FeatureResult:
    feature: str
    kind: Literal["numeric", "categorical"]
    score: float | None  # None: not tested (see note)
    threshold: float | None  # from the null at this window's size
    min_effect: float
    drifted: bool
    effect: Literal["none", "small", "moderate", "large"]
    n_current: int  # non-missing values
    n_reference: int
    patients_current: int
    effective_current: float
    effective_reference: float
    median_current: float | None
    median_reference: float | None
    mean_current: float | None
    mean_reference: float | None
    since: int | None = None  # epoch s of the day the change is first sustained
    where: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


@dataclass
class Comparison:
    verdict: Verdict
    severity: Severity
    likely_kind: Kind | None
    features: list[FeatureResult]
    prediction: FeatureResult | None
    n_patients: int
    n_patient_days: int
    n_reference_rows: int
    n_reference_patients: int | None
    pathway_mix_score: float
    pathway_mix_changed: bool
    pathway_mix_current: dict[str, float]
    pathway_mix_reference: dict[str, float]
    null_level: float
    null_draws: int
    reasons: list[str]

    @property
    def drifted(self) -> list[FeatureResult]:
        return [f for f in self.features if f.drifted]


def shares(labels: np.ndarray) -> dict[str, float]:
    names, counts = np.unique(labels, return_counts=True)
    return {str(n): float(c / labels.size) for n, c in zip(names, counts, strict=True)}


def mix_weights(reference_pathway: np.ndarray, current_pathway: np.ndarray) -> np.ndarray:
    """Reference row weights that give the reference the current window's pathway mix."""
    cur, ref = shares(current_pathway), shares(reference_pathway)
    if set(cur) & set(ref) == set():
        return np.ones(len(reference_pathway))
    weights = np.zeros(len(reference_pathway))
    for pathway, ref_share in ref.items():
        weights[reference_pathway == pathway] = cur.get(pathway, 0.0) / ref_share
    return weights


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, q * cum[-1])])


def _effect_class(score: float, kind: str, config: DriftConfig) -> Any:
    small, moderate, large = (
        (
            config.min_effect_categorical,
            config.moderate_effect_categorical,
            config.large_effect_categorical,
        )
        if kind == "categorical"
        else (
            config.min_effect_numeric,
            config.moderate_effect_numeric,
            config.large_effect_numeric,
        )
    )
    if score >= large:
        return "large"
    if score >= moderate:
        return "moderate"
    if score >= small:
        return "small"
    return "none"


def _patients(frame: MonitoringFrame, rows: np.ndarray) -> int:
    if frame.patient is None:
        return int(rows.sum())
    return int(np.unique(frame.patient[rows]).size)


def compare(
    reference: MonitoringFrame, current: MonitoringFrame, config: DriftConfig
) -> Comparison:
    """The verdict of ``current`` against ``reference`` (both already narrowed to the scope)."""
    n_patients = _patients(current, np.ones(len(current), dtype=bool))
    n_days = len(current)
    if n_patients < config.min_window_patients or n_days < config.min_window_patient_days:
        raise InsufficientDataError(
            f"{n_patients} patients and {n_days} patient-days in the window: a drift verdict "
            f"needs at least {config.min_window_patients} patients and "
            f"{config.min_window_patient_days} patient-days"
        )
    if len(reference) == 0:
        raise InsufficientDataError("the reference has no rows in this scope")
    weights = mix_weights(reference.pathway, current.pathway)
    cur_groups = current.patient
    ref_groups = reference.patient

    columns: dict[str, tuple[str, np.ndarray, np.ndarray, float, float]] = {}
    pending: dict[str, dict[str, Any]] = {}
    skipped: list[FeatureResult] = []
    names = [f.name for f in FEATURES] + [PREDICTION]
    for j, name in enumerate(names):
        kind = "categorical" if name in config.categorical_features else "numeric"
        cur_v = current.probability if name == PREDICTION else current.X[:, j]
        ref_v = reference.probability if name == PREDICTION else reference.X[:, j]
        cur_ok, ref_ok = np.isfinite(cur_v), np.isfinite(ref_v) & (weights > 0)
        patients_cur = _patients(current, cur_ok)
        base: dict[str, Any] = dict(
            feature=name,
            kind=kind,
            n_current=int(cur_ok.sum()),
            n_reference=int(ref_ok.sum()),
            patients_current=patients_cur,
            min_effect=config.min_effect_categorical
            if kind == "categorical"
            else config.min_effect_numeric,
        )
        why = ""
        if patients_cur < config.min_feature_patients:
            why = (
                f"not tested: measured in {patients_cur} patients of the window "
                f"(need {config.min_feature_patients})"
            )
        elif ref_ok.sum() < config.min_values_per_feature:
            why = f"not tested: {int(ref_ok.sum())} reference values"
        elif np.unique(ref_v[ref_ok]).size < 2:
            why = "not tested: constant in the reference"
        if why:
            skipped.append(
                FeatureResult(
                    **base,
                    score=None,
                    threshold=None,
                    drifted=False,
                    effect="none",
                    effective_current=0.0,
                    effective_reference=0.0,
                    median_current=None,
                    median_reference=None,
                    mean_current=None,
                    mean_reference=None,
                    note=why,
                )
            )
            continue
        w = weights[ref_ok]
        # Kish's weighting efficiency times the clustering design effect.
        weight_eff = float(w.sum() ** 2 / np.sum(w**2)) / len(w)
        n_ref_eff = (
            ref_ok.sum()
            * weight_eff
            / distribution_design_effect(
                ref_v[ref_ok], None if ref_groups is None else ref_groups[ref_ok]
            )
        )
        n_cur_eff = cur_ok.sum() / distribution_design_effect(
            cur_v[cur_ok], None if cur_groups is None else cur_groups[cur_ok]
        )
        columns[name] = (kind, ref_v[ref_ok], w, float(n_cur_eff), float(n_ref_eff))
        pending[name] = {
            **base,
            "effective_current": float(n_cur_eff),
            "effective_reference": float(n_ref_eff),
            "cur": cur_v[cur_ok],
            "cur_rows": cur_ok,
            "ref": ref_v[ref_ok],
            "w": w,
        }
    if not [n for n in pending if n != PREDICTION]:
        raise InsufficientDataError(
            f"no feature was measured in at least {config.min_feature_patients} patients of the "
            "window: nothing to compare"
        )
    null = calibrate(columns, alpha=config.alpha, draws=config.null_draws, seed=config.sample_seed)
    results: dict[str, FeatureResult] = {}
    for name, p in pending.items():
        score = distance(p["kind"], p["ref"], p["cur"], p["w"])
        threshold = null.thresholds[name]
        drifted = bool(score > threshold and score >= p["min_effect"])
        numeric = p["kind"] == "numeric"
        results[name] = FeatureResult(
            feature=name,
            kind=p["kind"],
            score=score,
            threshold=threshold,
            min_effect=p["min_effect"],
            drifted=drifted,
            effect=_effect_class(score, p["kind"], config) if drifted else "none",
            n_current=p["n_current"],
            n_reference=p["n_reference"],
            patients_current=p["patients_current"],
            effective_current=p["effective_current"],
            effective_reference=p["effective_reference"],
            median_current=float(np.median(p["cur"])) if numeric else None,
            median_reference=_weighted_quantile(p["ref"], p["w"], 0.5) if numeric else None,
            mean_current=float(np.mean(p["cur"])),
            mean_reference=float(np.average(p["ref"], weights=p["w"])),
            since=_onset(current, p["cur_rows"], p["cur"], p["ref"], p["w"]) if drifted else None,
        )
    ordered = [results.get(n) for n in names if n != PREDICTION]
    features = [r for r in ordered if r is not None] + [
        s for s in skipped if s.feature != PREDICTION
    ]
    features.sort(key=lambda r: names.index(r.feature))
    prediction = results.get(PREDICTION) or next(
        (s for s in skipped if s.feature == PREDICTION), None
    )
    mix_cur, mix_ref = shares(current.pathway), shares(reference.pathway)
    mix_score = distance("categorical", reference.pathway, current.pathway)
    verdict, severity, likely, reasons = _judge(features, prediction, config)
    return Comparison(
        verdict=verdict,
        severity=severity,
        likely_kind=likely,
        features=features,
        prediction=prediction,
        n_patients=n_patients,
        n_patient_days=n_days,
        n_reference_rows=len(reference),
        n_reference_patients=None
        if reference.patient is None
        else int(np.unique(reference.patient).size),
        pathway_mix_score=mix_score,
        pathway_mix_changed=mix_score >= config.pathway_mix_threshold,
        pathway_mix_current=mix_cur,
        pathway_mix_reference=mix_ref,
        null_level=null.level,
        null_draws=null.draws,
        reasons=reasons,
    )


def _onset(
    current: MonitoringFrame,
    rows: np.ndarray,
    values: np.ndarray,
    reference: np.ndarray,
    weights: np.ndarray,
) -> int | None:
    """The day from which the shift holds to the end of the window (a one-sided scan).

    Daily means are compared with the reference mean in reference standard deviations; the
    onset is the start of the trailing run of days whose summed deviation, scaled by the square
    root of its length, is largest.
    """
    days = current.scored_at[rows] // DAY_S
    unique_days = np.unique(days)
    if unique_days.size < 2:
        return int(unique_days[0] * DAY_S) if unique_days.size else None
    mean = float(np.average(reference, weights=weights))
    sd = float(np.sqrt(np.average((reference - mean) ** 2, weights=weights))) or 1.0
    daily = np.array([(values[days == d].mean() - mean) / sd for d in unique_days])
    sign = np.sign(daily.sum()) or 1.0
    tail = np.cumsum((sign * daily)[::-1])[::-1]
    lengths = np.arange(unique_days.size, 0, -1)
    best = int(np.argmax(tail / np.sqrt(lengths)))
    return int(unique_days[best] * DAY_S)


def _judge(
    features: list[FeatureResult], prediction: FeatureResult | None, config: DriftConfig
) -> tuple[Verdict, Severity, Kind | None, list[str]]:
    drifted = [f for f in features if f.drifted]
    reasons: list[str] = []
    prediction_moved = prediction is not None and prediction.drifted
    if not drifted and not prediction_moved:
        return "ok", "none", None, ["no feature moved beyond what chance gives at this size"]
    effects = [f.effect for f in drifted] + ([prediction.effect] if prediction_moved else [])  # type: ignore[union-attr]
    big = [e for e in effects if e in ("moderate", "large")]
    verdict: Verdict = "drift" if big or len(drifted) >= config.drift_min_features else "warning"
    if "large" in effects or len(drifted) >= config.high_severity_features:
        severity: Severity = "high"
    elif verdict == "drift":
        severity = "moderate"
    else:
        severity = "low"
    reasons.append(
        f"{len(drifted)} feature(s) beyond chance at this window size"
        + (f", {len(big)} with a moderate or large effect" if big else ", all small")
    )
    if prediction_moved:
        reasons.append("the model's predicted risk moved beyond chance")
    return verdict, severity, likely_kind(drifted, prediction_moved), reasons


def likely_kind(drifted: list[FeatureResult], prediction_moved: bool) -> Kind | None:
    """What kind of change the pattern of drifted features points to.

    A device or unit fault moves the readings of one or two measurements (a pulse oximeter,
    a scale) and leaves who the patients are alone; a population change moves age and many
    measurements together; falling adherence moves the missed-day and time-since features.
    """
    names = {f.feature for f in drifted}
    channels = {_CHANNEL[n] for n in names if _CHANNEL.get(n)}
    if names & POPULATION_FEATURES or len(channels) >= 3:
        return "population"
    if channels:
        return "device-or-unit"
    if names & ADHERENCE_FEATURES:
        return "adherence"
    if prediction_moved:
        return "model-output"
    return "unclear" if names else None
