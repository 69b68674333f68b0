"""Drift, data-quality and performance reports with Evidently 0.7, and the verdict built on them.

One call, :func:`run_drift_report`, compares a window of scored rows with the model's reference
sample and returns a :class:`DriftReportResult`: the verdict (ok / warning / drift), the features
that drifted, data-quality flags (kept apart from statistical drift), prediction drift,
classification performance and calibration when outcomes are known, per-slice verdicts, and the
report as JSON (for machines) and HTML (for people).

Statistical drift uses Evidently's ``ValueDrift`` per feature (method and threshold per feature
type from :class:`~monitoring.config.DriftConfig`) and ``DriftedColumnsCount``; data quality uses
``MissingValueCount`` and ``OutRangeValueCount`` with test conditions; performance uses
``ClassificationPreset``. Calibration (Brier score, calibration-in-the-large, slope, expected
calibration error) is computed here: Evidently 0.7 has no calibration metric.
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

from models.features import FEATURE_INDEX, FEATURE_NAMES, FEATURES
from models.measurements import MEASUREMENTS
from monitoring.config import P_VALUE_METHODS, DriftConfig
from monitoring.data import RAW_PREFIX, MonitoringFrame, reference_hash

if TYPE_CHECKING:
    import pandas as pd

Verdict = Literal["ok", "warning", "drift"]
REPORT_SCHEMA = "triage.drift-report/1"
SYNTHETIC_NOTE = (
    "The shipped model is trained on synthetic data; performance figures describe this window "
    "only and are no clinical validation."
)
_LABELS_EN = {f.name: f.label_en for f in FEATURES}
_LABELS_NB = {f.name: f.label_nb for f in FEATURES}


class InsufficientDataError(ValueError):
    """The window has too few rows for a verdict that means anything."""


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
class FeatureDrift:
    feature: str
    method: str
    threshold: float
    score: float | None  # None: not tested (too few values)
    drifted: bool
    strong: bool  # drift on its own (score far beyond its threshold)
    n_current: int
    n_reference: int
    note: str = ""


@dataclass(frozen=True)
class SliceVerdict:
    by: Literal["pathway", "organisation"]
    value: str
    n_current: int
    n_reference: int
    verdict: Verdict | None  # None: skipped, see reason
    drifted_features: list[str]
    prediction_drift: bool
    data_quality: list[str]  # "kind:column" of each flag
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
    drifted_features: list[str]
    data_quality: list[Flag]
    prediction_drift: bool
    performance: Performance | None
    slices: list[SliceVerdict]
    features: list[FeatureDrift]
    json: dict[str, Any]
    html: str
    window_start: str
    window_end: str
    model_version: str
    pathway: str | None
    organisation: str | None
    reference_hash: str
    n_current: int
    n_reference: int
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


def _testable(column: str, ref: np.ndarray, cur: np.ndarray, config: DriftConfig) -> str:
    """Why a column cannot be tested, or '' when it can."""
    ref_ok, cur_ok = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if len(ref_ok) < config.min_values_per_feature or len(cur_ok) < config.min_values_per_feature:
        return (
            f"not tested: {len(cur_ok)} current and {len(ref_ok)} reference values "
            f"(need {config.min_values_per_feature} each)"
        )
    if np.unique(ref_ok).size < 2:
        return "not tested: constant in the reference"
    return ""


# ---------------------------------------------------------------------------------------------
# the report


@dataclass
class _Core:
    """Drift and data quality of one current/reference pair (the whole window or a slice)."""

    features: list[FeatureDrift]
    prediction_score: float | None
    prediction_drift: bool
    pathway_mix_score: float | None
    pathway_mix_drift: bool
    flags: list[Flag]
    verdict: Verdict


@dataclass(frozen=True)
class _Check:
    """One data-quality rule: a share of rows that must stay at or below ``limit``."""

    kind: Literal["missing", "out_of_range", "implausible"]
    column: str
    limit: float
    reference_share: float | None
    bounds: tuple[float, float] | None  # None: the missing-value rule


def _out_of_range_share(values: np.ndarray, lo: float, hi: float) -> tuple[float, int]:
    """Share and count outside [lo, hi] among non-missing values (Evidently's definition)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, 0
    count = int(((finite < lo) | (finite > hi)).sum())
    return count / finite.size, count


def _quality_checks(
    ref_df: pd.DataFrame, config: DriftConfig, raw_channels: list[str]
) -> list[_Check]:
    checks: list[_Check] = []
    for column in list(FEATURE_NAMES) + [RAW_PREFIX + c for c in raw_channels]:
        ref_missing = float(ref_df[column].isna().mean()) if len(ref_df) else 0.0
        checks.append(
            _Check(
                "missing",
                column,
                min(1.0, ref_missing + config.missing_rate_max_increase),
                ref_missing,
                None,
            )
        )
    ranges: list[tuple[Literal["out_of_range", "implausible"], str, float, float, float]] = []
    for channel in raw_channels:
        if channel in config.expected_ranges:
            lo, hi = config.expected_ranges[channel]
            ranges.append(
                ("out_of_range", RAW_PREFIX + channel, lo, hi, config.out_of_range_max_share)
            )
        if channel in MEASUREMENTS:
            m = MEASUREMENTS[channel]
            ranges.append(
                (
                    "implausible",
                    RAW_PREFIX + channel,
                    m.plausible_min,
                    m.plausible_max,
                    config.implausible_max_share,
                )
            )
    for feature, (lo, hi) in config.feature_ranges.items():
        ranges.append(("out_of_range", feature, lo, hi, config.out_of_range_max_share))
    for kind, column, lo, hi, limit in ranges:
        ref_share, _ = _out_of_range_share(ref_df[column].to_numpy(dtype=np.float64), lo, hi)
        checks.append(
            _Check(
                kind,
                column,
                limit,
                None if math.isnan(ref_share) else ref_share,
                (float(lo), float(hi)),
            )
        )
    return checks


def _flag_text(
    kind: str, column: str, share: float, count: int, ref: float | None, config: DriftConfig
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
    return (
        f"{pct} of {en} values {what_en} {span} ({count} values){ref_en}",
        f"{pct} av verdiene for {nb} {what_nb} {span} ({count} verdier){ref_nb}",
    )


def _drift_score(
    ref: pd.Series, cur: pd.Series, method: str, threshold: float, categorical: bool
) -> tuple[float, bool]:
    """Evidently's own stat test (the one ``ValueDrift`` runs), without its plots."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Categorical if categorical else ColumnType.Numerical
    ref, cur = ref.dropna(), cur.dropna()
    test = get_stattest(ref, cur, column_type, method)
    outcome = test(ref, cur, column_type, threshold)
    return float(outcome.drift_score), bool(outcome.drifted)


def _assess(
    ref_df: pd.DataFrame, cur_df: pd.DataFrame, config: DriftConfig, raw_channels: list[str]
) -> _Core:
    features: list[FeatureDrift] = []
    for name in FEATURE_NAMES:
        method, threshold = config.method_for(name), config.threshold_for(name)
        ref_v = ref_df[name].to_numpy(dtype=np.float64)
        cur_v = cur_df[name].to_numpy(dtype=np.float64)
        n_cur, n_ref = int(np.isfinite(cur_v).sum()), int(np.isfinite(ref_v).sum())
        why = _testable(name, ref_v, cur_v, config)
        if why:
            features.append(
                FeatureDrift(name, method, threshold, None, False, False, n_cur, n_ref, why)
            )
            continue
        score, is_drifted = _drift_score(
            ref_df[name], cur_df[name], method, threshold, name in config.categorical_features
        )
        strong = (
            is_drifted
            and method not in P_VALUE_METHODS
            and (score >= config.strong_drift_factor * threshold)
        )
        features.append(
            FeatureDrift(name, method, threshold, score, is_drifted, strong, n_cur, n_ref)
        )

    prediction_score, prediction_drift = None, False
    if not _testable(
        "probability",
        ref_df["probability"].to_numpy(dtype=np.float64),
        cur_df["probability"].to_numpy(dtype=np.float64),
        config,
    ):
        prediction_score, prediction_drift = _drift_score(
            ref_df["probability"],
            cur_df["probability"],
            config.prediction_method,
            config.prediction_threshold,
            False,
        )
    mix_score, mix_drift = None, False
    if cur_df["pathway"].nunique() + ref_df["pathway"].nunique() > 2:
        mix_score, mix_drift = _drift_score(
            ref_df["pathway"],
            cur_df["pathway"],
            "jensenshannon",
            config.pathway_mix_threshold,
            True,
        )

    flags: list[Flag] = []
    for check in _quality_checks(ref_df, config, raw_channels):
        values = cur_df[check.column].to_numpy(dtype=np.float64)
        if check.bounds is None:
            count = int((~np.isfinite(values)).sum())
            share = count / values.size if values.size else math.nan
        else:
            share, count = _out_of_range_share(values, *check.bounds)
        if math.isfinite(share) and share > check.limit:
            en, nb = _flag_text(
                check.kind, check.column, share, count, check.reference_share, config
            )
            flags.append(
                Flag(
                    check.kind,
                    check.column.removeprefix(RAW_PREFIX),
                    share,
                    check.limit,
                    check.reference_share,
                    count,
                    en,
                    nb,
                )
            )

    drifted = [f for f in features if f.drifted]
    n_tested = sum(f.score is not None for f in features)
    if n_tested == 0:
        # "ok" on nothing compared would be a false reassurance.
        raise InsufficientDataError(
            f"no feature has {config.min_values_per_feature} values on both sides to compare"
        )
    share_drifted = len(drifted) / n_tested if n_tested else 0.0
    verdict: Verdict
    if (
        prediction_drift
        or any(f.strong for f in drifted)
        or (drifted and (share_drifted >= config.drift_share or mix_drift))
    ):
        verdict = "drift"
    elif len(drifted) >= config.warning_min_features or mix_drift:
        verdict = "warning"
    else:
        verdict = "ok"
    return _Core(features, prediction_score, prediction_drift, mix_score, mix_drift, flags, verdict)


def _evidently_report(
    ref_df: pd.DataFrame,
    cur_df: pd.DataFrame,
    config: DriftConfig,
    raw_channels: list[str],
    core: _Core,
) -> Any:
    """The same checks as an Evidently Report with test conditions: the people's view (HTML)."""
    from evidently import Dataset, Report
    from evidently.metrics import (
        DriftedColumnsCount,
        MissingValueCount,
        OutRangeValueCount,
        ValueDrift,
    )
    from evidently.tests import lt, lte

    tested = [f.feature for f in core.features if f.score is not None]
    metrics: list[Any] = []
    if tested:
        metrics.append(
            DriftedColumnsCount(
                columns=tested,
                per_column_method={f: config.method_for(f) for f in tested},
                per_column_threshold={f: config.threshold_for(f) for f in tested},
                drift_share=config.drift_share,
                share_tests=[lt(config.drift_share)],
            )
        )
        metrics += [
            ValueDrift(column=f, method=config.method_for(f), threshold=config.threshold_for(f))
            for f in tested
        ]
    if core.prediction_score is not None:
        metrics.append(
            ValueDrift(
                column="probability",
                method=config.prediction_method,
                threshold=config.prediction_threshold,
            )
        )
    if core.pathway_mix_score is not None:
        metrics.append(
            ValueDrift(
                column="pathway", method="jensenshannon", threshold=config.pathway_mix_threshold
            )
        )
    for check in _quality_checks(ref_df, config, raw_channels):
        if check.bounds is None:
            metrics.append(MissingValueCount(column=check.column, share_tests=[lte(check.limit)]))
        else:
            metrics.append(
                OutRangeValueCount(
                    column=check.column,
                    left=check.bounds[0],
                    right=check.bounds[1],
                    share_tests=[lte(check.limit)],
                )
            )
    definition = _data_definition(config, raw_channels)
    return Report(metrics, include_tests=True).run(
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
            for t in result["tests"]
        ],
    }


def _raw_channels(reference: MonitoringFrame, current: MonitoringFrame) -> list[str]:
    return [c for c in sorted(set(reference.raw) | set(current.raw))]


def _scope(
    reference: MonitoringFrame,
    current: MonitoringFrame,
    config: DriftConfig,
    *,
    start_s: int,
    end_s: int,
    pathway: str | None,
    organisation: str | None,
) -> tuple[MonitoringFrame, MonitoringFrame, dict[str, Any]]:
    """Rows of the window and scope; the reference narrowed to the pathway when it can be."""
    mask = (current.scored_at >= start_s) & (current.scored_at < end_s)
    if pathway is not None:
        mask &= current.pathway == pathway
    if organisation is not None:
        mask &= current.organisation == organisation
    scope = {"current_rows_outside_scope": int((~mask).sum()), "reference_scope": "all pathways"}
    if pathway is not None:
        same = reference.pathway == pathway
        if int(same.sum()) >= config.min_window_rows:
            reference = reference.take(same)
            scope["reference_scope"] = f"pathway {pathway}"
        else:
            scope["reference_scope"] = (
                f"all pathways (only {int(same.sum())} reference rows for pathway {pathway})"
            )
    return reference, current.take(mask), scope


def _slices(
    reference: MonitoringFrame,
    current: MonitoringFrame,
    config: DriftConfig,
    raw_channels: list[str],
) -> list[SliceVerdict]:
    out: list[SliceVerdict] = []
    for by in config.slice_by:
        cur_labels = getattr(current, by)
        ref_labels = getattr(reference, by)
        for value in sorted(set(cur_labels.tolist())):
            cur = current.take(cur_labels == value)
            # Pathways are compared with their own part of the reference when it has one, so a
            # changed pathway mix does not read as drift inside each pathway.
            ref_rows = ref_labels == value
            ref = reference.take(ref_rows) if ref_rows.sum() >= config.min_slice_rows else reference
            if len(cur) < config.min_slice_rows:
                out.append(
                    SliceVerdict(
                        by,
                        value,
                        len(cur),
                        len(ref),
                        None,
                        [],
                        False,
                        [],
                        f"skipped: {len(cur)} rows < {config.min_slice_rows}",
                    )
                )
                continue
            try:
                core = _assess(
                    _to_pandas(ref, raw_channels),
                    _to_pandas(cur, raw_channels),
                    config,
                    raw_channels,
                )
            except InsufficientDataError as exc:
                out.append(
                    SliceVerdict(
                        by, value, len(cur), len(ref), None, [], False, [], f"skipped: {exc}"
                    )
                )
                continue
            out.append(
                SliceVerdict(
                    by,
                    value,
                    len(cur),
                    len(ref),
                    core.verdict,
                    [f.feature for f in core.features if f.drifted],
                    core.prediction_drift,
                    [f"{f.kind}:{f.column}" for f in core.flags],
                    "" if ref is not reference else "compared with the whole reference",
                )
            )
    return out


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
) -> DriftReportResult:
    """Compare a window of scored rows with the model's reference sample.

    Rows of ``current`` outside [window_start, window_end) or outside the pathway/organisation
    scope are left out (and counted). Raises :class:`InsufficientDataError` when fewer than
    ``config.min_window_rows`` remain.
    """
    start_iso, end_iso = _iso_utc(window_start), _iso_utc(window_end)
    ref_hash = reference_hash(reference)
    key = report_key(
        window_start=start_iso,
        window_end=end_iso,
        model_version=model_version,
        pathway=pathway,
        organisation=organisation,
        reference_hash=ref_hash,
    )
    reference, current, scope = _scope(
        reference,
        current,
        config,
        start_s=_epoch_s(start_iso),
        end_s=_epoch_s(end_iso),
        pathway=pathway,
        organisation=organisation,
    )
    if len(current) < config.min_window_rows:
        raise InsufficientDataError(
            f"{len(current)} scored rows in the window {start_iso}–{end_iso}"
            f"{f' for pathway {pathway}' if pathway else ''}: at least {config.min_window_rows} "
            "are needed for a drift verdict (DriftConfig.min_window_rows)"
        )
    n_current, n_reference = len(current), len(reference)
    # Performance uses every known outcome; only the distribution comparison is sampled.
    performance, perf_snapshot = _performance(current, config)
    current = _sample(current, config.max_rows, config.sample_seed)
    reference = _sample(reference, config.max_rows, config.sample_seed + 1)
    raw_channels = _raw_channels(reference, current)
    ref_df, cur_df = _to_pandas(reference, raw_channels), _to_pandas(current, raw_channels)
    core = _assess(ref_df, cur_df, config, raw_channels)
    slices = _slices(reference, current, config, raw_channels)
    drifted = [f.feature for f in core.features if f.drifted]

    payload: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "report_key": key,
        "window_start": start_iso,
        "window_end": end_iso,
        "model_version": model_version,
        "pathway": pathway,
        "organisation": organisation,
        "reference_hash": ref_hash,
        "config_fingerprint": config.fingerprint(),
        "config": config.model_dump(mode="json"),
        "n_current": n_current,
        "n_reference": n_reference,
        "n_current_used": len(current),
        "n_reference_used": len(reference),
        **scope,
        "verdict": core.verdict,
        "drifted_features": drifted,
        "drifted_share": (len(drifted) / max(1, sum(f.score is not None for f in core.features))),
        "features": [asdict(f) for f in core.features],
        "prediction_drift": {
            "drifted": core.prediction_drift,
            "score": core.prediction_score,
            "method": config.prediction_method,
            "threshold": config.prediction_threshold,
            "mean_probability_current": _nanmean(current.probability),
            "mean_probability_reference": _nanmean(reference.probability),
        },
        "pathway_mix": {
            "drifted": core.pathway_mix_drift,
            "score": core.pathway_mix_score,
            "method": "jensenshannon",
            "threshold": config.pathway_mix_threshold,
            "current": _shares(current.pathway),
            "reference": _shares(reference.pathway),
        },
        "data_quality": [asdict(f) for f in core.flags],
        "performance": None if performance is None else asdict(performance),
        "slices": [asdict(s) for s in slices],
    }
    snapshot = None
    if config.render_html:
        snapshot = _evidently_report(ref_df, cur_df, config, raw_channels, core)
        payload["evidently"] = _evidently_section(snapshot)
    else:
        payload["evidently"] = {
            "version": _evidently_version(),
            "note": "no Evidently Report rendered (render_html is off); scores come from the "
            "same Evidently stat tests",
        }
    payload = json.loads(
        json.dumps(payload, default=_json_default, allow_nan=True), parse_constant=lambda _: None
    )
    html = ""
    if config.render_html:
        html = render_html(payload, [snapshot] + ([perf_snapshot] if perf_snapshot else []), config)
    return DriftReportResult(
        report_key=key,
        verdict=core.verdict,
        drifted_features=drifted,
        data_quality=core.flags,
        prediction_drift=core.prediction_drift,
        performance=performance,
        slices=slices,
        features=core.features,
        json=payload,
        html=html,
        window_start=start_iso,
        window_end=end_iso,
        model_version=model_version,
        pathway=pathway,
        organisation=organisation,
        reference_hash=ref_hash,
        n_current=n_current,
        n_reference=n_reference,
        prediction_drift_score=core.prediction_score,
    )


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


_VERDICT_NB = {"ok": "OK", "warning": "ADVARSEL", "drift": "DATADRIFT"}


def _banner(payload: dict[str, Any]) -> str:
    """Plain-words summary above Evidently's widgets, in English and Norwegian (bokmål)."""
    esc = html_lib.escape
    flags = (
        "".join(
            f"<li>{esc(f['text_en'])}<br><i>{esc(f['text_nb'])}</i></li>"
            for f in payload["data_quality"]
        )
        or "<li>none / ingen</li>"
    )
    slices = "".join(
        f"<li>{esc(s['by'])} {esc(s['value'])}: {esc(str(s['verdict'] or s['reason']))}</li>"
        for s in payload["slices"]
    )
    perf = payload["performance"]
    perf_html = (
        "<p>No outcomes recorded for this window: performance not computed. / "
        "<i>Ingen registrerte utfall i perioden: ytelse er ikke beregnet.</i></p>"
    )
    if perf:
        auc = "–" if perf["roc_auc"] is None else f"{perf['roc_auc']:.3f}"
        perf_html = (
            f"<p>Performance on {perf['n_outcomes']} known outcomes: AUROC {auc}, "
            f"Brier {perf['brier']:.3f}, calibration-in-the-large "
            f"{perf['calibration_in_the_large']:+.3f}. {esc(SYNTHETIC_NOTE)}</p>"
        )
    verdict = str(payload["verdict"])
    return (
        '<section style="font-family: sans-serif; margin: 1em 2em" lang="en">'
        f"<h1>Drift report: {esc(verdict.upper())} / "
        f'<span lang="nb">{esc(_VERDICT_NB.get(verdict, verdict))}</span></h1>'
        f"<p>Window {esc(payload['window_start'])} – {esc(payload['window_end'])}; model "
        f"{esc(payload['model_version'])}; pathway {esc(str(payload['pathway'] or 'all'))}; "
        f"organisation {esc(str(payload['organisation'] or 'all'))}; "
        f"{payload['n_current']} current rows against {payload['n_reference']} reference rows "
        f"({esc(payload['reference_scope'])}). Report key <code>{esc(payload['report_key'])}"
        f"</code>, reference <code>{esc(payload['reference_hash'][:12])}</code>.</p>"
        f"<p>Drifted features: {esc(', '.join(payload['drifted_features']) or 'none')}. "
        f"Prediction drift: {'yes' if payload['prediction_drift']['drifted'] else 'no'}. "
        f"Pathway mix changed: {'yes' if payload['pathway_mix']['drifted'] else 'no'}.</p>"
        f'<h2>Data quality / <span lang="nb">Datakvalitet</span></h2><ul>{flags}</ul>'
        f'<h2>Slices / <span lang="nb">Delgrupper</span></h2>'
        f"<ul>{slices or '<li>none</li>'}</ul>{perf_html}</section>"
    )
