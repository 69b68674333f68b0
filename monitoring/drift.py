"""Drift, data-quality and performance reports, and the verdict built on them.

One call, :func:`run_drift_report`, compares a window of patient-day rows with a reference built
the same way (the model's training sample, or the site's own baseline period) and returns a
:class:`DriftReportResult`: the verdict (ok / warning / drift) with its severity and the likely
kind of change, the features that moved beyond chance at this window size (monitoring.verdict),
data-quality flags kept apart from drift, prediction drift, classification performance and
calibration when outcomes are known, where the change is (pathway and organisation), a
plain-language summary in English, bokmål and nynorsk (monitoring.narrative), and the report as
JSON (for machines) and HTML (for people, with Evidently's plots of the same comparison).
Calibration (Brier score, calibration-in-the-large, slope, expected calibration error) is
computed here: Evidently 0.7 has no calibration metric.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from models.features import AGE_BAND_LABELS, DAY_S, FEATURE_INDEX, FEATURE_NAMES, FEATURES
from models.measurements import MEASUREMENTS
from monitoring.config import DriftConfig
from monitoring.data import RAW_PREFIX, MonitoringFrame, reference_hash
from monitoring.stats import calibrate, distance, distribution_design_effect
from monitoring.verdict import (
    PREDICTION,
    Comparison,
    FeatureResult,
    InsufficientDataError,
    compare,
    mix_weights,
)

if TYPE_CHECKING:
    import pandas as pd

Verdict = Literal["ok", "warning", "drift"]
ReferenceKind = Literal["training-sample", "local-baseline"]
REPORT_SCHEMA = "triage.drift-report/2"
SYNTHETIC_NOTE = (
    "The shipped model is trained on synthetic data; performance figures describe this window "
    "only and are no clinical validation."
)
_LABELS_EN = {f.name: f.label_en for f in FEATURES}
_LABELS_NB = {f.name: f.label_nb for f in FEATURES}
__all__ = ["DriftReportResult", "InsufficientDataError", "report_key", "run_drift_report"]


@dataclass(frozen=True)
class Flag:
    """A data-quality finding, separate from statistical drift."""

    kind: Literal["missing", "out_of_range", "implausible"]
    column: str  # feature name, or canonical measurement name for raw values
    share: float  # share of rows affected in the current window
    limit: float  # the share above which it is flagged
    reference_share: float | None
    count: int
    text_en: str
    text_nb: str


@dataclass(frozen=True)
class SliceVerdict:
    """Where a drifted feature moved: one pathway or organisation of the window."""

    by: Literal["pathway", "organisation"]
    value: str
    n_current: int  # patient-days
    n_patients: int
    verdict: Verdict | None  # None: not examined, see reason
    drifted_features: list[str]
    prediction_drift: bool
    data_quality: list[str]
    reason: str = ""


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    n: int
    mean_predicted: float
    observed_rate: float


@dataclass(frozen=True)
class Performance:
    n_outcomes: int
    n_positive: int
    prevalence: float
    threshold: float
    roc_auc: float | None
    accuracy: float
    precision: float
    recall: float
    f1: float
    log_loss: float
    brier: float
    mean_predicted: float
    calibration_in_the_large: float  # observed rate minus mean predicted probability
    calibration_intercept: float | None
    calibration_slope: float | None  # 1 is perfect; < 1 means too-extreme predictions
    expected_calibration_error: float
    bins: list[CalibrationBin]
    note: str = SYNTHETIC_NOTE


@dataclass
class DriftReportResult:
    report_key: str
    verdict: Verdict
    severity: str
    likely_kind: str | None
    drifted_features: list[str]
    data_quality: list[Flag]
    prediction_drift: bool
    performance: Performance | None
    slices: list[SliceVerdict]
    features: list[FeatureResult]
    json: dict[str, Any]
    html: str
    window_start: str
    window_end: str
    model_version: str
    pathway: str | None
    organisation: str | None
    reference_hash: str
    reference_kind: str
    n_current: int
    n_reference: int
    n_patients: int
    prediction_drift_score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# keys and windows


def _iso_utc(moment: datetime | int | float | str) -> str:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError(f"window bound {moment!r} has no time zone; pass UTC or an offset")
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.fromtimestamp(float(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch_s(iso: str) -> int:
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def report_key(
    *,
    window_start: datetime | int | str,
    window_end: datetime | int | str,
    model_version: str,
    pathway: str | None,
    organisation: str | None,
    reference_hash: str,
    reference_window: tuple[str, str] | None = None,
) -> str:
    """Deterministic report id: same window, model, scope and reference give the same key."""
    canonical = json.dumps(
        {
            "schema": REPORT_SCHEMA,
            "window_start": _iso_utc(window_start),
            "window_end": _iso_utc(window_end),
            "model_version": model_version,
            "pathway": pathway,
            "organisation": organisation,
            "reference": reference_hash,
            **({"reference_window": list(reference_window)} if reference_window else {}),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# frames for Evidently


def _sample(frame: MonitoringFrame, max_rows: int, seed: int) -> MonitoringFrame:
    if len(frame) <= max_rows:
        return frame
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False))
    return frame.take(rows)


def _to_pandas(frame: MonitoringFrame, raw_channels: list[str]) -> pd.DataFrame:
    import pandas as pd

    columns: dict[str, np.ndarray] = {name: frame.X[:, j] for j, name in enumerate(FEATURE_NAMES)}
    columns["probability"] = frame.probability
    columns["pathway"] = frame.pathway
    for channel in raw_channels:
        columns[RAW_PREFIX + channel] = frame.raw.get(channel, np.full(len(frame), np.nan))
    return pd.DataFrame(columns)


def _data_definition(config: DriftConfig, raw_channels: list[str]) -> Any:
    from evidently import DataDefinition

    categorical = [f for f in FEATURE_NAMES if f in config.categorical_features]
    numeric = [f for f in FEATURE_NAMES if f not in config.categorical_features]
    numeric += ["probability"] + [RAW_PREFIX + c for c in raw_channels]
    return DataDefinition(numerical_columns=numeric, categorical_columns=[*categorical, "pathway"])


# ---------------------------------------------------------------------------------------------
# data quality (apart from drift)


def _row_bounds(
    frame: MonitoringFrame, channel: str, config: DriftConfig
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-row expected range of a measurement: the adult range, or the row's age band's."""
    if channel not in config.expected_ranges:
        return None
    lo_adult, hi_adult = config.expected_ranges[channel]
    lo, hi = np.full(len(frame), lo_adult), np.full(len(frame), hi_adult)
    bands = frame.X[:, FEATURE_INDEX["age_band"]]
    for band, ranges in config.expected_ranges_by_age_band.items():
        if channel in ranges:
            rows = bands == AGE_BAND_LABELS.index(band)
            lo[rows], hi[rows] = ranges[channel]
    return lo, hi


def _share_outside(
    values: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float
) -> tuple[float, int]:
    finite = np.isfinite(values)
    if not finite.any():
        return math.nan, 0
    outside = finite & ((values < lo) | (values > hi))
    return float(outside.sum() / finite.sum()), int(outside.sum())


def _missing_share(values: np.ndarray) -> float:
    return float((~np.isfinite(values)).mean()) if values.size else math.nan


def data_quality(
    reference: MonitoringFrame, current: MonitoringFrame, config: DriftConfig
) -> list[Flag]:
    """Missing values, values outside the expected (age-dependent) range, implausible values."""
    flags: list[Flag] = []
    nan = lambda frame: np.full(len(frame), np.nan)  # noqa: E731
    columns: list[tuple[str, np.ndarray, np.ndarray]] = [
        (name, reference.X[:, j], current.X[:, j]) for j, name in enumerate(FEATURE_NAMES)
    ]
    channels = sorted(set(reference.raw) | set(current.raw))
    columns += [
        (RAW_PREFIX + ch, reference.raw.get(ch, nan(reference)), current.raw.get(ch, nan(current)))
        for ch in channels
    ]
    for column, ref_v, cur_v in columns:
        ref_share = _missing_share(ref_v)
        if math.isnan(ref_share) or ref_share >= 1.0:
            continue  # nothing to compare against (the training sample keeps no raw readings)
        limit = min(1.0, ref_share + config.missing_rate_max_increase)
        share = _missing_share(cur_v)
        if share > limit:
            count = int((~np.isfinite(cur_v)).sum())
            flags.append(_flag("missing", column, share, limit, ref_share, count, config, False))
    for ch in channels:
        cur_v = current.raw.get(ch, nan(current))
        bounds = _row_bounds(current, ch, config)
        if bounds is not None:
            share, count = _share_outside(cur_v, *bounds)
            ref_bounds = _row_bounds(reference, ch, config)
            ref_share = (
                _share_outside(reference.raw[ch], *ref_bounds)[0]
                if ch in reference.raw and ref_bounds is not None
                else math.nan
            )
            if share > config.out_of_range_max_share:
                by_age = any(ch in r for r in config.expected_ranges_by_age_band.values())
                flags.append(
                    _flag(
                        "out_of_range",
                        RAW_PREFIX + ch,
                        share,
                        config.out_of_range_max_share,
                        None if math.isnan(ref_share) else ref_share,
                        count,
                        config,
                        by_age,
                    )
                )
        if ch in MEASUREMENTS:
            m = MEASUREMENTS[ch]
            share, count = _share_outside(cur_v, m.plausible_min, m.plausible_max)
            if share > config.implausible_max_share:
                flags.append(
                    _flag(
                        "implausible",
                        RAW_PREFIX + ch,
                        share,
                        config.implausible_max_share,
                        None,
                        count,
                        config,
                        False,
                    )
                )
    for feature, (lo, hi) in config.feature_ranges.items():
        j = FEATURE_INDEX[feature]
        share, count = _share_outside(current.X[:, j], lo, hi)
        if share > config.out_of_range_max_share:
            ref_share, _ = _share_outside(reference.X[:, j], lo, hi)
            flags.append(
                _flag(
                    "out_of_range",
                    feature,
                    share,
                    config.out_of_range_max_share,
                    None if math.isnan(ref_share) else ref_share,
                    count,
                    config,
                    False,
                )
            )
    return flags


def _flag(
    kind: Literal["missing", "out_of_range", "implausible"],
    column: str,
    share: float,
    limit: float,
    ref: float | None,
    count: int,
    config: DriftConfig,
    by_age: bool,
) -> Flag:
    en, nb = _flag_text(kind, column, share, count, ref, config, by_age)
    return Flag(kind, column.removeprefix(RAW_PREFIX), share, limit, ref, count, en, nb)


def _flag_text(
    kind: str,
    column: str,
    share: float,
    count: int,
    ref: float | None,
    config: DriftConfig,
    by_age: bool = False,
) -> tuple[str, str]:
    """The flag in English and Norwegian (bokmål), e.g. "10.0 % of SpO2 values out of range"."""
    if column.startswith(RAW_PREFIX):
        name = column[len(RAW_PREFIX) :]
        m = MEASUREMENTS.get(name)
        en = m.label_en if m else name.replace("_", " ")
        nb = m.label_nb if m else name.replace("_", " ")
        if kind == "implausible" and m:
            lo, hi = m.plausible_min, m.plausible_max
        else:
            lo, hi = config.expected_ranges.get(name, (math.nan, math.nan))
        unit = m.unit_display if m else ""
    else:
        en, nb = _LABELS_EN[column], _LABELS_NB[column]
        lo, hi = config.feature_ranges.get(column, (math.nan, math.nan))
        unit = FEATURES[FEATURE_INDEX[column]].unit
    pct = f"{share * 100:.1f} %"
    ref_en = "" if ref is None else f" (reference {ref * 100:.1f} %)"
    ref_nb = "" if ref is None else f" (referanse {ref * 100:.1f} %)"
    if kind == "missing":
        return (
            f"{pct} of {en} values missing{ref_en}",
            f"{pct} av verdiene for {nb} mangler{ref_nb}",
        )
    what_en = "outside physiological limits" if kind == "implausible" else "out of range"
    what_nb = (
        "utenfor fysiologiske grenser" if kind == "implausible" else "utenfor forventet område"
    )
    span = f"{lo:g}–{hi:g} {unit}".strip()
    age_en = " for adults, children's by age" if by_age else ""
    age_nb = " for voksne, barns etter alder" if by_age else ""
    return (
        f"{pct} of {en} values {what_en} {span}{age_en} ({count} values){ref_en}",
        f"{pct} av verdiene for {nb} {what_nb} {span}{age_nb} ({count} verdier){ref_nb}",
    )


# ---------------------------------------------------------------------------------------------
# where: the pathways and organisations a drifted feature moved in


_BY_LABEL = {
    "pathway": {"en": "pathway", "nb": "forløp", "nn": "forløp"},
    "organisation": {"en": "organisation", "nb": "organisasjon", "nn": "organisasjon"},
}


def _column(frame: MonitoringFrame, name: str) -> np.ndarray:
    return frame.probability if name == PREDICTION else frame.X[:, FEATURE_INDEX[name]]


def _localise(
    reference: MonitoringFrame,
    current: MonitoringFrame,
    comparison: Comparison,
    config: DriftConfig,
) -> tuple[dict[str, list[dict[str, Any]]], list[SliceVerdict]]:
    """For each drifted feature, the slices where it moved beyond chance (per slice, alpha)."""
    moved = [f for f in comparison.features if f.drifted]
    if comparison.prediction is not None and comparison.prediction.drifted:
        moved.append(comparison.prediction)
    where: dict[str, list[dict[str, Any]]] = {f.feature: [] for f in moved}
    slices: list[SliceVerdict] = []
    for by in config.slice_by:
        labels = getattr(current, by)
        for value in sorted(set(labels.tolist())):
            rows = labels == value
            part = current.take(rows)
            patients = (
                int(rows.sum()) if part.patient is None else int(np.unique(part.patient).size)
            )
            if not moved:
                slices.append(
                    SliceVerdict(
                        by,
                        value,
                        len(part),
                        patients,
                        None,
                        [],
                        False,
                        [],
                        "not examined: nothing moved in the whole window",
                    )
                )
                continue
            if patients < config.min_slice_patients:
                slices.append(
                    SliceVerdict(
                        by,
                        value,
                        len(part),
                        patients,
                        None,
                        [],
                        False,
                        [],
                        f"not examined: {patients} patients < {config.min_slice_patients}",
                    )
                )
                continue
            ref = reference
            if (
                by == "pathway"
                and (reference.pathway == value).sum() >= config.min_values_per_feature
            ):
                ref = reference.take(reference.pathway == value)
            weights = mix_weights(ref.pathway, part.pathway)
            columns, observed = {}, {}
            for f in moved:
                cur_v, ref_v = _column(part, f.feature), _column(ref, f.feature)
                ok_c, ok_r = np.isfinite(cur_v), np.isfinite(ref_v) & (weights > 0)
                if ok_c.sum() < 2 or ok_r.sum() < config.min_values_per_feature:
                    continue
                n_cur = ok_c.sum() / distribution_design_effect(
                    cur_v[ok_c], None if part.patient is None else part.patient[ok_c]
                )
                w = weights[ok_r]
                n_ref = ok_r.sum() * float(w.sum() ** 2 / np.sum(w**2)) / len(w)
                columns[f.feature] = (f.kind, ref_v[ok_r], w, float(n_cur), float(n_ref))
                observed[f.feature] = distance(f.kind, ref_v[ok_r], cur_v[ok_c], w)
            null = calibrate(
                columns,
                alpha=config.alpha,
                draws=config.null_draws,
                seed=config.sample_seed,
                family_wise=False,
            )
            moved_here = []
            for name, score in observed.items():
                hit = score > null.thresholds[name] and score >= next(
                    f.min_effect for f in moved if f.feature == name
                )
                where[name].append(
                    {
                        "by": by,
                        "by_label": _BY_LABEL[by],
                        "value": value,
                        "patients": patients,
                        "score": score,
                        "threshold": null.thresholds[name],
                        "moved": bool(hit),
                    }
                )
                if hit:
                    moved_here.append(name)
            slices.append(
                SliceVerdict(
                    by,
                    value,
                    len(part),
                    patients,
                    "drift" if moved_here else "ok",
                    [n for n in moved_here if n != PREDICTION],
                    PREDICTION in moved_here,
                    [],
                )
            )
    # A feature that moved everywhere is not "mainly" anywhere: keep the slices only when some
    # slice of a kind did not move.
    for entries in where.values():
        for by in config.slice_by:
            of_kind = [e for e in entries if e["by"] == by]
            if of_kind and all(e["moved"] for e in of_kind) and len(of_kind) > 1:
                for e in of_kind:
                    e["moved"] = False
                    e["everywhere"] = True
    return where, slices


# ---------------------------------------------------------------------------------------------
# the report


def _scope(
    current: MonitoringFrame,
    *,
    start_s: int,
    end_s: int,
    pathway: str | None,
    organisation: str | None,
) -> tuple[MonitoringFrame, int]:
    mask = (current.scored_at >= start_s) & (current.scored_at < end_s)
    if pathway is not None:
        mask &= current.pathway == pathway
    if organisation is not None:
        mask &= current.organisation == organisation
    return current.take(mask), int((~mask).sum())


def _narrow_reference(
    reference: MonitoringFrame, pathway: str | None, config: DriftConfig
) -> tuple[MonitoringFrame, str]:
    if pathway is None:
        return reference, "all pathways"
    same = reference.pathway == pathway
    if int(same.sum()) >= config.min_window_patient_days:
        return reference.take(same), f"pathway {pathway}"
    return reference, f"all pathways (only {int(same.sum())} reference rows for pathway {pathway})"


def _feature_json(f: FeatureResult, where: list[dict[str, Any]]) -> dict[str, Any]:
    out = asdict(f)
    out["where"] = where
    out["label_en"] = _label("en", f.feature)
    out["label_nb"] = _label("nb", f.feature)
    return out


def _label(lang: str, name: str) -> str:
    from monitoring.narrative import feature_label

    return feature_label(name, lang)


def run_drift_report(
    reference: MonitoringFrame,
    current: MonitoringFrame,
    config: DriftConfig,
    *,
    window_start: datetime | int | str,
    window_end: datetime | int | str,
    model_version: str,
    pathway: str | None,
    organisation: str | None,
    reference_kind: ReferenceKind = "training-sample",
    reference_window: tuple[datetime | int | str, datetime | int | str] | None = None,
) -> DriftReportResult:
    """Compare a window of patient-day rows with a reference built the same way.

    Rows of ``current`` outside [window_start, window_end) (their clinical reference time) or
    outside the pathway/organisation scope are left out (and counted). A local-baseline
    reference (``reference_kind="local-baseline"``, with its ``reference_window``) is taken as
    given: the caller built it for the same scope. Raises :class:`InsufficientDataError` when
    the window has too few patients or patient-days.
    """
    start_iso, end_iso = _iso_utc(window_start), _iso_utc(window_end)
    ref_window = (
        None
        if reference_window is None
        else (_iso_utc(reference_window[0]), _iso_utc(reference_window[1]))
    )
    ref_hash = reference_hash(reference)
    key = report_key(
        window_start=start_iso,
        window_end=end_iso,
        model_version=model_version,
        pathway=pathway,
        organisation=organisation,
        reference_hash=ref_hash,
        reference_window=ref_window,
    )
    current, outside = _scope(
        current,
        start_s=_epoch_s(start_iso),
        end_s=_epoch_s(end_iso),
        pathway=pathway,
        organisation=organisation,
    )
    if reference_kind == "local-baseline":
        reference_scope = "the same scope"
    else:
        reference, reference_scope = _narrow_reference(reference, pathway, config)
    scope_words = "".join(
        [
            f" for pathway {pathway}" if pathway else "",
            f" in organisation {organisation}" if organisation else "",
        ]
    )
    if len(current) == 0:
        raise InsufficientDataError(
            f"no patient-days in the window {start_iso} – {end_iso}{scope_words}: nothing to "
            "report on (check the window and the scope)"
        )
    comparison = compare(reference, current, config)
    n_current, n_reference = len(current), len(reference)
    performance, perf_snapshot = _performance(current, config)
    flags = data_quality(reference, current, config)
    where, slices = _localise(reference, current, comparison, config)
    drifted = [f.feature for f in comparison.drifted]
    prediction = comparison.prediction
    tested = [f for f in comparison.features if f.score is not None]
    payload: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "report_key": key,
        "window_start": start_iso,
        "window_end": end_iso,
        "window": {
            "start": start_iso,
            "end": end_iso,
            "time": "clinical (each row's reference time), [start, end)",
            "patients": comparison.n_patients,
            "patient_days": comparison.n_patient_days,
        },
        "model_version": model_version,
        "pathway": pathway,
        "organisation": organisation,
        "reference": {
            "kind": reference_kind,
            "hash": ref_hash,
            "window_start": None if ref_window is None else ref_window[0],
            "window_end": None if ref_window is None else ref_window[1],
            "rows": n_reference,
            "patients": comparison.n_reference_patients,
            "scope": reference_scope,
        },
        "reference_hash": ref_hash,
        "reference_scope": reference_scope,
        "config_fingerprint": config.fingerprint(),
        "config": config.model_dump(mode="json"),
        "n_current": n_current,
        "n_reference": n_reference,
        "current_rows_outside_scope": outside,
        "verdict": comparison.verdict,
        "severity": comparison.severity,
        "likely_kind": comparison.likely_kind,
        "reasons": comparison.reasons,
        "drifted_features": drifted,
        "drifted_share": len(drifted) / max(1, len(tested)),
        "null": {
            "alpha": config.alpha,
            "draws": comparison.null_draws,
            "per_feature_level": comparison.null_level,
            "method": "pseudo-windows of the window's effective size drawn from the "
            "reference (family-wise over all features and the prediction)",
        },
        "features": [_feature_json(f, where.get(f.feature, [])) for f in comparison.features],
        "prediction_drift": {
            **({} if prediction is None else _feature_json(prediction, where.get(PREDICTION, []))),
            "drifted": bool(prediction is not None and prediction.drifted),
            "score": None if prediction is None else prediction.score,
            "threshold": None if prediction is None else prediction.threshold,
            "method": "wasserstein",
            "mean_probability_current": _nanmean(current.probability),
            "mean_probability_reference": _nanmean(reference.probability),
        },
        "pathway_mix": {
            "changed": comparison.pathway_mix_changed,
            "drifted": False,  # a changed mix is a note, never drift by itself
            "score": comparison.pathway_mix_score,
            "method": "jensenshannon",
            "threshold": config.pathway_mix_threshold,
            "current": comparison.pathway_mix_current,
            "reference": comparison.pathway_mix_reference,
        },
        "data_quality": [asdict(f) for f in flags],
        "performance": None if performance is None else asdict(performance),
        "performance_over_time": performance_over_time(current, performance, config),
        "slices": [asdict(s) for s in slices],
    }
    payload = json.loads(
        json.dumps(payload, default=_json_default, allow_nan=True), parse_constant=lambda _: None
    )
    from monitoring.narrative import summarise

    payload["summary"] = summarise(payload)
    snapshot = None
    if config.render_html:
        sampled_cur = _sample(current, config.max_rows, config.sample_seed)
        sampled_ref = _sample(reference, config.max_rows, config.sample_seed + 1)
        raw_channels = _raw_channels(sampled_ref, sampled_cur)
        snapshot = _evidently_report(
            _to_pandas(sampled_ref, raw_channels),
            _to_pandas(sampled_cur, raw_channels),
            config,
            raw_channels,
            comparison,
        )
        payload["evidently"] = _evidently_section(snapshot)
    else:
        payload["evidently"] = {
            "version": _evidently_version(),
            "note": "no Evidently Report rendered (render_html is off); the verdict comes from "
            "monitoring.verdict either way",
        }
    payload = json.loads(
        json.dumps(payload, default=_json_default, allow_nan=True), parse_constant=lambda _: None
    )
    html = ""
    if config.render_html:
        html = render_html(payload, [snapshot] + ([perf_snapshot] if perf_snapshot else []), config)
    return DriftReportResult(
        report_key=key,
        verdict=comparison.verdict,
        severity=comparison.severity,
        likely_kind=comparison.likely_kind,
        drifted_features=drifted,
        data_quality=flags,
        prediction_drift=bool(prediction is not None and prediction.drifted),
        performance=performance,
        slices=slices,
        features=comparison.features,
        json=payload,
        html=html,
        window_start=start_iso,
        window_end=end_iso,
        model_version=model_version,
        pathway=pathway,
        organisation=organisation,
        reference_hash=ref_hash,
        reference_kind=reference_kind,
        n_current=n_current,
        n_reference=n_reference,
        n_patients=comparison.n_patients,
        prediction_drift_score=None if prediction is None else prediction.score,
    )


def _evidently_report(
    ref_df: pd.DataFrame,
    cur_df: pd.DataFrame,
    config: DriftConfig,
    raw_channels: list[str],
    comparison: Comparison,
) -> Any:
    """Evidently's view of the same comparison (the people's plots), with the thresholds the
    verdict used; the verdict itself is monitoring.verdict's."""
    from evidently import Dataset, Report
    from evidently.metrics import DriftedColumnsCount, MissingValueCount, ValueDrift

    tested = [f for f in comparison.features if f.score is not None]
    metrics: list[Any] = []
    if tested:
        metrics.append(
            DriftedColumnsCount(
                columns=[f.feature for f in tested],
                per_column_method={f.feature: config.method_for(f.feature) for f in tested},
                per_column_threshold={f.feature: float(f.threshold or 0) for f in tested},
            )
        )
        metrics += [
            ValueDrift(
                column=f.feature,
                method=config.method_for(f.feature),
                threshold=float(f.threshold or 0),
            )
            for f in tested
        ]
    prediction = comparison.prediction
    if prediction is not None and prediction.score is not None:
        metrics.append(
            ValueDrift(
                column="probability",
                method="wasserstein",
                threshold=float(prediction.threshold or 0),
            )
        )
    for column in list(FEATURE_NAMES) + [RAW_PREFIX + c for c in raw_channels]:
        metrics.append(MissingValueCount(column=column))
    definition = _data_definition(config, raw_channels)
    return Report(metrics).run(
        Dataset.from_pandas(cur_df, data_definition=definition),
        Dataset.from_pandas(ref_df, data_definition=definition),
    )


def _evidently_section(snapshot: Any) -> dict[str, Any]:
    result = snapshot.dict()
    return {
        "version": _evidently_version(),
        "metrics": [{"name": m["metric_name"], "value": m["value"]} for m in result["metrics"]],
        "tests": [
            {"name": t["name"], "status": t["status"], "description": t["description"]}
            for t in result.get("tests", [])
        ],
    }


def _raw_channels(reference: MonitoringFrame, current: MonitoringFrame) -> list[str]:
    return [c for c in sorted(set(reference.raw) | set(current.raw))]


def _shares(labels: np.ndarray) -> dict[str, float]:
    names, counts = np.unique(labels, return_counts=True)
    return {str(n): float(c / labels.size) for n, c in zip(names, counts, strict=True)}


def _nanmean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _evidently_version() -> str:
    import evidently

    return str(evidently.__version__)


# ---------------------------------------------------------------------------------------------
# performance and calibration


def _performance(current: MonitoringFrame, config: DriftConfig) -> tuple[Performance | None, Any]:
    if current.outcome is None:
        return None, None
    known = np.isfinite(current.outcome) & np.isfinite(current.probability)
    y = current.outcome[known]
    p = np.clip(current.probability[known], 1e-6, 1 - 1e-6)
    n_pos = int((y == 1).sum())
    if y.size < config.min_outcomes or n_pos == 0 or n_pos == y.size:
        return None, None
    snapshot, evidently_values = _evidently_classification(y, p, config.classification_threshold)
    predicted = p >= config.classification_threshold
    tp = int((predicted & (y == 1)).sum())
    fp = int((predicted & (y == 0)).sum())
    fn = int((~predicted & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    intercept, slope = _calibration_line(y, p)
    bins = _calibration_bins(y, p, config.calibration_bins)
    ece = sum(b.n * abs(b.observed_rate - b.mean_predicted) for b in bins) / y.size
    performance = Performance(
        n_outcomes=int(y.size),
        n_positive=n_pos,
        prevalence=float(y.mean()),
        threshold=config.classification_threshold,
        roc_auc=evidently_values.get("RocAuc"),
        accuracy=float((predicted == (y == 1)).mean()),
        precision=precision,
        recall=recall,
        f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        log_loss=float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        brier=float(np.mean((p - y) ** 2)),
        mean_predicted=float(p.mean()),
        calibration_in_the_large=float(y.mean() - p.mean()),
        calibration_intercept=intercept,
        calibration_slope=slope,
        expected_calibration_error=float(ece),
        bins=bins,
    )
    return performance, snapshot


def _evidently_classification(
    y: np.ndarray, p: np.ndarray, threshold: float
) -> tuple[Any, dict[str, float]]:
    import pandas as pd
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    df = pd.DataFrame({"outcome": y.astype(int), "probability": p})
    definition = DataDefinition(
        numerical_columns=["probability"],
        classification=[
            BinaryClassification(target="outcome", prediction_probas="probability", pos_label=1)
        ],
    )
    snapshot = Report([ClassificationPreset(probas_threshold=threshold)]).run(
        Dataset.from_pandas(df, data_definition=definition), None
    )
    values: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        kind = str(metric["config"]["type"]).rsplit(":", 1)[-1]
        if isinstance(metric["value"], int | float) and kind not in values:
            values[kind] = float(metric["value"])
    return snapshot, values


def _calibration_line(y: np.ndarray, p: np.ndarray) -> tuple[float | None, float | None]:
    """Logistic recalibration y ~ a + b·logit(p) by Newton's method (Cox 1958)."""
    logit = np.log(p / (1 - p))
    design = np.column_stack([np.ones_like(logit), logit])
    beta = np.array([0.0, 1.0])
    for _ in range(50):
        mu = 1 / (1 + np.exp(-(design @ beta)))
        w = mu * (1 - mu)
        hessian = design.T @ (design * w[:, None])
        if np.linalg.cond(hessian) > 1e12:
            return None, None
        step = np.linalg.solve(hessian, design.T @ (y - mu))
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(beta[0]), float(beta[1])


def _calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int) -> list[CalibrationBin]:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        rows = which == b
        if rows.any():
            bins.append(
                CalibrationBin(
                    float(edges[b]),
                    float(edges[b + 1]),
                    int(rows.sum()),
                    float(p[rows].mean()),
                    float(y[rows].mean()),
                )
            )
    return bins


def _auroc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the ROC curve by ranks (Mann-Whitney), ties averaged; None with one class."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(p, kind="stable")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    ranks[order] = np.arange(1, len(p) + 1)
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    for start, count in zip(first, counts, strict=True):
        if count > 1:
            ranks[order[start : start + count]] = start + (count + 1) / 2
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


PERIOD_DAYS = 7


def performance_over_time(
    current: MonitoringFrame, performance: Performance | None, config: DriftConfig
) -> dict[str, Any] | None:
    """Calibration and AUROC per week of the window, and whether recalibration is due.

    Recalibration (a new intercept and slope on recent outcomes, the model unchanged) is
    proposed when the window's calibration is off by more than ``max_calibration_error`` or its
    slope is outside 0.8–1.25; a falling AUROC (below ``min_auroc``) asks for more than that.
    """
    if performance is None or current.outcome is None:
        return None
    known = np.isfinite(current.outcome) & np.isfinite(current.probability)
    y, p, t = current.outcome[known], current.probability[known], current.scored_at[known]
    start = int(t.min()) // DAY_S * DAY_S
    period = (t - start) // (PERIOD_DAYS * DAY_S)
    periods = []
    for k in np.unique(period):
        rows = period == k
        yk, pk = y[rows], p[rows]
        periods.append(
            {
                "start": _iso_utc(start + int(k) * PERIOD_DAYS * DAY_S),
                "end": _iso_utc(start + (int(k) + 1) * PERIOD_DAYS * DAY_S),
                "n_outcomes": int(rows.sum()),
                "n_positive": int((yk == 1).sum()),
                "observed_rate": float(yk.mean()),
                "mean_predicted": float(pk.mean()),
                "calibration_in_the_large": float(yk.mean() - pk.mean()),
                "roc_auc": _auroc(yk, pk) if rows.sum() >= config.min_outcomes // 2 else None,
            }
        )
    slope = performance.calibration_slope
    miscalibrated = (
        abs(performance.calibration_in_the_large) > config.max_calibration_error
        or performance.expected_calibration_error > config.max_calibration_error
        or (slope is not None and not 0.8 <= slope <= 1.25)
    )
    low_auroc = performance.roc_auc is not None and performance.roc_auc < config.min_auroc
    return {
        "period_days": PERIOD_DAYS,
        "periods": periods,
        "recalibration_proposed": bool(miscalibrated),
        "auroc_below_minimum": bool(low_auroc),
        "note": SYNTHETIC_NOTE,
    }


# ---------------------------------------------------------------------------------------------
# HTML


def evidently_library_path() -> str:
    """Path of Evidently's JavaScript bundle, for the service to serve at ``html_library_url``."""
    from evidently.legacy.utils.dashboard import STATIC_PATH

    return f"{STATIC_PATH}/index.js"


def render_html(payload: dict[str, Any], snapshots: list[Any], config: DriftConfig) -> str:
    """Evidently's report widgets (aggregated plots only, no raw rows) under a verdict banner."""
    from evidently.legacy.renderers.html_widgets import group_widget
    from evidently.legacy.utils.dashboard import TemplateParams, file_html_template

    widgets: list[Any] = []
    for snapshot in snapshots:
        widgets.append(group_widget(title="", widgets=snapshot._widgets))
        widgets += snapshot._tests_widgets
    params = _template_params(widgets, TemplateParams)
    if not config.html_standalone:
        params.embed_lib = False
        params.include_js_files = [config.html_library_url]
    document = file_html_template(params)
    return document.replace("<body>", "<body>\n" + _banner(payload), 1)


def _template_params(widgets: list[Any], template_params: Any) -> Any:
    from evidently.core.metric_types import DetailsInfo
    from evidently.legacy.model.dashboard import DashboardInfo
    from evidently.legacy.model.widget import AdditionalGraphInfo, BaseWidgetInfo

    items = []
    for info in widgets:
        for graph in info.get_additional_graphs():
            params = graph.params if isinstance(graph, AdditionalGraphInfo) else graph
            items.append(DetailsInfo(title="", info=params, id=graph.id))
    additional = {
        f"{item.id}": item.info.dict() if isinstance(item.info, BaseWidgetInfo) else item.info
        for item in items
    }
    # A fixed dashboard id keeps the same report rendering to the same bytes.
    return template_params(
        dashboard_id="drift_report",
        dashboard_info=DashboardInfo(name="Drift report", widgets=widgets),
        additional_graphs=additional,
    )


_LANG_NAMES = {"en": "English", "nb": "Norsk bokmål", "nn": "Norsk nynorsk"}
_HEADINGS = {
    "en": (
        "What changed",
        "Likely kind",
        "Data quality (apart from drift)",
        "Notes",
        "What to do next",
        "Who",
    ),
    "nb": (
        "Hva som endret seg",
        "Sannsynlig type",
        "Datakvalitet (for seg)",
        "Merknader",
        "Hva som bør gjøres",
        "Hvem",
    ),
    "nn": (
        "Kva som endra seg",
        "Sannsynleg type",
        "Datakvalitet (for seg)",
        "Merknader",
        "Kva som bør gjerast",
        "Kven",
    ),
}


def _banner(payload: dict[str, Any]) -> str:
    """The report in plain words (en, nb, nn), then the technical appendix with code names."""
    esc = html_lib.escape
    parts = ['<section style="font-family: sans-serif; margin: 1em 2em">']
    for lang, text in (payload.get("summary") or {}).items():
        h = _HEADINGS[lang]
        items = lambda xs: "".join(f"<li>{esc(x)}</li>" for x in xs)  # noqa: E731
        parts.append(
            f'<div lang="{lang}"><h1>{esc(text["headline"])}</h1>'
            f"<h2>{h[0]}</h2><ul>{items(text['changes'])}</ul>"
            + (f"<h2>{h[1]}</h2><p>{esc(text['likely_kind'])}</p>" if text["likely_kind"] else "")
            + f"<h2>{h[2]}</h2><ul>{items(text['data_quality']) or '<li>–</li>'}</ul>"
            + (f"<h2>{h[3]}</h2><ul>{items(text['notes'])}</ul>" if text["notes"] else "")
            + f"<h2>{h[4]}</h2><ul>{items(text['next_steps'])}</ul>"
            f"<p><b>{h[5]}:</b> {esc(text['who'])}</p></div><hr>"
        )
    rows = "".join(
        f"<tr><td><code>{esc(f['feature'])}</code></td><td>{esc(str(f['score']))}</td>"
        f"<td>{esc(str(f['threshold']))}</td><td>{'yes' if f['drifted'] else 'no'}</td>"
        f"<td>{f['patients_current']}</td><td>{esc(f['note'])}</td></tr>"
        for f in payload["features"]
    )
    perf = payload.get("performance")
    perf_html = ""
    if perf:
        auc = "–" if perf["roc_auc"] is None else f"{perf['roc_auc']:.3f}"
        perf_html = (
            f"<p>Performance on {perf['n_outcomes']} known outcomes: AUROC {auc}, "
            f"Brier {perf['brier']:.3f}, calibration-in-the-large "
            f"{perf['calibration_in_the_large']:+.3f}. {esc(SYNTHETIC_NOTE)}</p>"
        )
    parts.append(
        '<details lang="en"><summary>Technical appendix</summary>'
        f"<p>Report key <code>{esc(payload['report_key'])}</code>; reference "
        f"{esc(payload['reference']['kind'])} <code>{esc(payload['reference_hash'][:12])}</code> "
        f"({payload['n_reference']} rows, {esc(payload['reference_scope'])}); window "
        f"{esc(payload['window_start'])} – {esc(payload['window_end'])}, "
        f"{payload['n_current']} patient-days. Thresholds: null distribution of "
        f"{payload['null']['draws']} pseudo-windows, family-wise alpha {payload['null']['alpha']}."
        "</p><table><tr><th>feature</th><th>score</th><th>threshold</th><th>drifted</th>"
        f"<th>patients</th><th>note</th></tr>{rows}</table>{perf_html}</details></section>"
    )
    return "".join(parts)
