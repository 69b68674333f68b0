"""Drift monitoring in the service: the current window from the store, report runs with an index
row and files, alerts, outcomes, and immutable sign-offs by compliance officers.

monitoring/ computes (Evidently); this module reads the store and hands it arrays, as
docs/architecture.md §1 says: monitoring never opens the store itself. monitoring.drift (and with it pandas and
evidently) is imported inside the report run only, so the scoring path never loads it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.features import CHANNEL_INDEX, DAY_S, HISTORY_CHANNELS, History
from monitoring.vocabulary import DECISIONS
from service.db.engine import transaction
from service.db.tables import DriftReport, DriftSignOff, Outcome, Patient, Reading
from service.domain.free_text import refuse_person_number
from service.domain.scoring import age_at
from service.errors import Conflict, InvalidInput, NotFound
from service.security import visibility
from service.security.principal import Principal

if TYPE_CHECKING:
    from monitoring.alerts import Alert
    from monitoring.config import DriftConfig
    from monitoring.data import MonitoringFrame
    from service.config import Settings
    from service.model_registry import ModelRegistry
    from service.observability import Metrics

log = logging.getLogger("triage.monitoring")

# An outcome counts for an assessment when the deterioration happened within this horizon after
# the assessment's reference time: the horizon the model predicts (training labels: deterioration
# within 72 h of the snapshot, training/simulator.py).
OUTCOME_HORIZON_S = 72 * 3600
# Weight has no "latest" feature (only changes); its raw value is read from the stored readings
# over the same look-back the scorer uses.
_HISTORY_WINDOW_S = 21 * 24 * 3600
# One vocabulary (monitoring.vocabulary) for the API, the CLI, the web pages and the docs.
SIGN_OFF_DECISIONS = DECISIONS
# Reports land here, below Settings.reports_dir.
DRIFT_SUBDIR = "drift"


class InsufficientWindow(InvalidInput):
    """Too few scored assessments in the window for a verdict that means anything."""


class DriftUnavailable(Conflict):
    """The loaded model carries no reference sample, so nothing can be compared against it."""


def _utc(moment: datetime) -> datetime:
    """Aware UTC; SQLite hands back naive datetimes that were stored as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _epoch_s(moment: datetime) -> int:
    return int(_utc(moment).timestamp())


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _equal(query: Any, *conditions: tuple[Any, Any]) -> Any:
    """The query narrowed by ``column == value`` for every value that is not None."""
    for column, value in conditions:
        if value is not None:
            query = query.where(column == value)
    return query


# ---- the current window ---------------------------------------------------------------------


def build_window_frame(
    session: Session,
    window_start: datetime,
    window_end: datetime,
    model: Any,
    pathway: str | None = None,
    organisation: str | None = None,
) -> MonitoringFrame:
    """One row per patient-day whose clinical reference time lies in [window_start, window_end).

    The rows come from the stored readings, not from the assessments: the day's newest reading,
    or the end of a day without readings, through models.features (monitoring.window), exactly
    as the model's reference sample and a local baseline are built. So the window follows
    clinical time (a backlog ingested in ten seconds lands on the days it was measured, and
    replaying last month gives last month's rows) and both sides of a comparison mean the same.
    ``model`` scores every row (the same model on both sides of a prediction-drift comparison).
    Days between a recorded deterioration and the patient's next reading are a hospital stay,
    not rows. Outcomes: 1 when a deterioration was recorded within 72 h after the row's time,
    0 when follow-up beyond 72 h is known without one, NaN otherwise.
    """
    from monitoring.data import MonitoringFrame
    from monitoring.window import patient_day_rows

    start_s, end_s = _epoch_s(window_start), _epoch_s(window_end)
    patient_query = _equal(
        select(Patient.id, Patient.birth_date, Patient.pathway_id, Patient.organisation),
        (Patient.pathway_id, pathway),
        (Patient.organisation, organisation),
    )
    patients = {r.id: r for r in session.execute(patient_query)}
    spans = {
        r.patient_id: (int(r.first), int(r.last))
        for r in session.execute(
            select(
                Reading.patient_id,
                func.min(Reading.effective_s).label("first"),
                func.max(Reading.effective_s).label("last"),
            )
            .where(Reading.name.in_(HISTORY_CHANNELS))
            .group_by(Reading.patient_id)
        )
        if r.patient_id in patients and r.first < end_s and r.last >= start_s - DAY_S
    }
    ids = sorted(spans)
    index = {pid: i for i, pid in enumerate(ids)}
    readings: list[tuple[int, str, int, float]] = []
    for chunk in _chunks(ids, 500):
        for r in session.execute(
            select(Reading.patient_id, Reading.name, Reading.effective_s, Reading.value).where(
                Reading.patient_id.in_(chunk),
                Reading.name.in_(HISTORY_CHANNELS),
                Reading.effective_s > start_s - _HISTORY_WINDOW_S,
                Reading.effective_s < end_s,
            )
        ):
            readings.append((index[r.patient_id], r.name, int(r.effective_s), float(r.value)))
    admissions: list[tuple[int, int]] = []
    for chunk in _chunks(ids, 500):
        for a in session.execute(
            select(Outcome.patient_id, Outcome.occurred_at).where(
                Outcome.patient_id.in_(chunk),
                Outcome.deteriorated.is_(True),
                Outcome.occurred_at < _utc(window_end),
            )
        ):
            admissions.append((index[a.patient_id], _epoch_s(a.occurred_at)))
    history = History.from_rows(readings)
    first = np.array([spans[pid][0] for pid in ids], dtype=np.int64)
    last = np.array([spans[pid][1] for pid in ids], dtype=np.int64)
    age0 = np.array([age_at(_birth(patients[pid].birth_date), 0) for pid in ids], dtype=float)
    rows = patient_day_rows(
        history,
        age0 if len(ids) else np.zeros(0),
        first,
        last,
        start_s,
        end_s,
        admission_patient=np.array([a[0] for a in admissions], dtype=np.int64),
        admission_start_s=np.array([a[1] for a in admissions], dtype=np.int64),
    )
    row_ids = [ids[i] for i in rows.patient]
    probability = (
        np.asarray(model.predict(rows.X).probability, dtype=np.float64)
        if len(rows)
        else np.zeros(0)
    )
    return MonitoringFrame(
        X=rows.X,
        probability=probability,
        pathway=np.array([patients[pid].pathway_id for pid in row_ids], dtype=str),
        organisation=np.array([patients[pid].organisation for pid in row_ids], dtype=str),
        scored_at=rows.time_s,
        outcome=_outcomes(session, row_ids, rows.time_s),
        raw={ch: rows.latest[:, CHANNEL_INDEX[ch]] for ch in HISTORY_CHANNELS},
        patient=np.array(row_ids, dtype=str),
    )


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for k in range(0, len(items), size):
        yield items[k : k + size]


def _birth(value: Any) -> date:
    return value if not isinstance(value, datetime) else value.date()


def _by_patient(items: Iterable[tuple[str, int, Any]]) -> dict[str, tuple[np.ndarray, list[Any]]]:
    grouped: dict[str, list[tuple[int, Any]]] = {}
    for pid, t, v in items:
        grouped.setdefault(pid, []).append((t, v))
    out = {}
    for pid, pairs in grouped.items():
        pairs.sort(key=lambda p: p[0])
        out[pid] = (np.array([p[0] for p in pairs], dtype=np.int64), [p[1] for p in pairs])
    return out


def _outcomes(session: Session, patient_ids: list[str], as_of_s: np.ndarray) -> np.ndarray:
    labels = np.full(len(patient_ids), np.nan)
    if not patient_ids:
        return labels
    wanted = set(patient_ids)
    since = datetime.fromtimestamp(int(as_of_s.min()), UTC)
    rows = session.execute(
        select(Outcome.patient_id, Outcome.occurred_at, Outcome.deteriorated).where(
            Outcome.occurred_at >= since
        )
    )
    series = _by_patient(
        (r.patient_id, _epoch_s(r.occurred_at), bool(r.deteriorated))
        for r in rows
        if r.patient_id in wanted
    )
    for i, (pid, t) in enumerate(zip(patient_ids, as_of_s, strict=True)):
        if pid not in series:
            continue
        times, deteriorated = series[pid]
        lo = int(np.searchsorted(times, t, side="left"))
        hi = int(np.searchsorted(times, t + OUTCOME_HORIZON_S, side="right"))
        if any(deteriorated[lo:hi]):
            labels[i] = 1.0
        elif times[-1] > t + OUTCOME_HORIZON_S:
            labels[i] = 0.0  # followed up beyond the horizon, no deterioration within it
    return labels


# ---- public shapes (plain dicts for the API, the CLI and the monthly summary) ----------------


def signoff_dict(s: DriftSignOff) -> dict[str, Any]:
    return {
        "id": s.id,
        "report_id": s.report_id,
        "decision": s.decision,
        "comment": s.comment,
        "signed_by": s.signed_by,
        "role": s.role,
        "signed_at": _utc(s.signed_at),
    }


def report_dict(r: DriftReport, signoff: DriftSignOff | None) -> dict[str, Any]:
    summary = r.summary or {}
    return {
        "id": r.id,
        "report_key": r.report_key,
        "window_start": _utc(r.window_start),
        "window_end": _utc(r.window_end),
        "model_version": r.model_version,
        "pathway": r.pathway,
        "organisation": r.organisation,
        "verdict": r.verdict,
        "drifted_features": list(r.drifted_features or []),
        "data_quality": list(summary.get("data_quality", [])),
        "prediction_drift": bool(summary.get("prediction_drift", False)),
        "pathway_mix_drift": bool(summary.get("pathway_mix_drift", False)),
        "performance": summary.get("performance"),
        "n_current": int(summary.get("n_current", 0)),
        "n_reference": int(summary.get("n_reference", 0)),
        "n_patients": summary.get("n_patients"),
        "severity": summary.get("severity"),
        "likely_kind": summary.get("likely_kind"),
        "pathway_mix_changed": bool(summary.get("pathway_mix_changed", False)),
        "reference_kind": summary.get("reference_kind", "training-sample"),
        "reference_window_start": (summary.get("reference_window") or [None, None])[0],
        "reference_window_end": (summary.get("reference_window") or [None, None])[1],
        "summary_en": summary.get("summary_en"),
        "summary_nb": summary.get("summary_nb"),
        "reference_hash": summary.get("reference_hash", ""),
        "created_at": _utc(r.created_at),
        "created_by": r.created_by,
        "sign_off": None if signoff is None else signoff_dict(signoff),
    }


def _summary(result: Any) -> dict[str, Any]:
    """What the index row keeps of a report: enough for lists, alerts and the monthly export."""
    perf = result.json.get("performance")
    return {
        "n_current": result.n_current,
        "n_reference": result.n_reference,
        "reference_hash": result.reference_hash,
        "config_fingerprint": result.json.get("config_fingerprint"),
        "prediction_drift": result.prediction_drift,
        "prediction_drift_score": result.prediction_drift_score,
        "pathway_mix_drift": False,  # a changed mix is a note, never drift
        "pathway_mix_changed": bool((result.json.get("pathway_mix") or {}).get("changed")),
        "severity": result.severity,
        "likely_kind": result.likely_kind,
        "reference_kind": result.reference_kind,
        "reference_window": [
            (result.json.get("reference") or {}).get("window_start"),
            (result.json.get("reference") or {}).get("window_end"),
        ],
        "n_patients": result.n_patients,
        "summary_en": (result.json.get("summary") or {}).get("en", {}).get("headline"),
        "summary_nb": (result.json.get("summary") or {}).get("nb", {}).get("headline"),
        "data_quality": [
            {
                "kind": f["kind"],
                "column": f["column"],
                "share": f["share"],
                "limit": f["limit"],
                "count": f["count"],
                "text_en": f["text_en"],
                "text_nb": f["text_nb"],
            }
            for f in result.json.get("data_quality", [])
        ],
        "performance": None
        if not perf
        else {
            k: perf.get(k)
            for k in (
                "n_outcomes",
                "n_positive",
                "roc_auc",
                "brier",
                "calibration_in_the_large",
                "expected_calibration_error",
                "note",
            )
        },
        "slices": [
            {
                "by": s["by"],
                "value": s["value"],
                "verdict": s["verdict"],
                "n_current": s["n_current"],
                "n_patients": s.get("n_patients"),
            }
            for s in result.json.get("slices", [])
        ],
    }


@dataclass
class RunOutcome:
    """A report run: the index row as a dict, and whether this call created it."""

    report: dict[str, Any]
    created: bool
    alerts: list[Any] = field(default_factory=list)


@dataclass
class ScheduledRun:
    """One scope of a scheduled run: a report, or why there is none."""

    pathway: str | None
    report_id: str | None
    verdict: str | None
    skipped: str | None = None


# ---- the service ----------------------------------------------------------------------------


class MonitoringService:
    """Runs drift reports against the loaded model's reference and keeps their index."""

    def __init__(
        self, settings: Settings, metrics: Metrics, models: ModelRegistry, config: DriftConfig
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models = models
        self.config = config
        # One report at a time per process; it runs in a separate process, so scoring keeps
        # its core and its latency (bench/bench_drift.py measures scoring p99 during a report).
        self._run_lock = threading.Lock()
        self._runner = ReportRunner()
        self._reference_cache: tuple[tuple[str, float], Any, str] | None = None
        self._gauges: dict[str, Any] | None = None

    def close(self) -> None:
        """Stop the report worker process (app shutdown, end of a CLI command)."""
        self._runner.close()

    @property
    def reports_dir(self) -> Path:
        return self.settings.reports_dir / DRIFT_SUBDIR

    # -- reference --------------------------------------------------------------------------

    def reference(self) -> tuple[Any, str, str, str]:
        """(training sample, its hash, model name, model version) of the model in service.

        The sample's probabilities are recomputed by the loaded model, so prediction drift
        compares one model's outputs on both sides.
        """
        from models.artifact import REFERENCE_FILE
        from monitoring.data import ReferenceMissingError, load_reference
        from monitoring.data import reference_hash as hash_of

        model = self.models.current().model
        path = model.folder / REFERENCE_FILE
        try:
            stamp = (str(path.resolve()), path.stat().st_mtime)
        except FileNotFoundError as exc:
            raise DriftUnavailable(
                f"model {model.version} has no reference sample ({REFERENCE_FILE}) in its "
                "artifact: drift cannot be computed; retrain or re-export the model"
            ) from exc
        cached = self._reference_cache
        if cached is None or cached[0] != stamp:
            try:
                frame = load_reference(model.folder)
            except ReferenceMissingError as exc:
                raise DriftUnavailable(str(exc)) from exc
            frame.probability = np.asarray(model.predict(frame.X).probability, dtype=np.float64)
            cached = (stamp, frame, hash_of(frame))
            self._reference_cache = cached
        return cached[1], cached[2], model.name, model.version

    # -- running ----------------------------------------------------------------------------

    def run_report(
        self,
        sessions: sessionmaker[Session],
        window_start: datetime,
        window_end: datetime,
        pathway: str | None = None,
        organisation: str | None = None,
        *,
        created_by: str,
        config: DriftConfig | None = None,
        reference_start: datetime | None = None,
        reference_end: datetime | None = None,
        role: str = "system",
    ) -> RunOutcome:
        """Run (or find) the report for a window and scope; blocking: call it in a thread.

        The reference is the model's training sample, or, with ``reference_start`` and
        ``reference_end``, the same scope's own baseline period built the same way. Same window,
        model, scope and reference -> the existing row (created=False). Raises
        InsufficientWindow (422) when the window (or the baseline) is too small for a verdict.
        The comparison itself runs in a separate process (scoring keeps its core).
        """
        from monitoring.data import reference_hash as hash_of
        from monitoring.drift import report_key

        config = config or self.config
        start, end = _utc(window_start), _utc(window_end)
        if not start < end:
            raise InvalidInput("window_start must be before window_end", location="window_start")
        if (reference_start is None) != (reference_end is None):
            raise InvalidInput(
                "give both reference.window_start and reference.window_end, or neither",
                location="reference",
            )
        model = self.models.current().model
        local = reference_start is not None and reference_end is not None
        if local:
            ref_start, ref_end = _utc(reference_start), _utc(reference_end)  # type: ignore[arg-type]
            if not ref_start < ref_end:
                raise InvalidInput(
                    "reference.window_start must be before reference.window_end",
                    location="reference.window_start",
                )
            if ref_end > start and ref_start < end:
                raise InvalidInput(
                    "the baseline period must not overlap the window it is compared with",
                    location="reference.window_end",
                )
            with sessions() as session:
                reference = build_window_frame(
                    session, ref_start, ref_end, model, pathway, organisation
                )
            self._check_size(
                reference, ref_start, ref_end, pathway, organisation, config, "baseline period"
            )
            ref_hash, model_name, model_version = hash_of(reference), model.name, model.version
        else:
            reference, ref_hash, model_name, model_version = self.reference()
        reference_window = (_iso(ref_start), _iso(ref_end)) if local else None
        key = report_key(
            window_start=start,
            window_end=end,
            model_version=model_version,
            pathway=pathway,
            organisation=organisation,
            reference_hash=ref_hash,
            reference_window=reference_window,
        )
        with sessions() as session:
            existing = self._by_key(session, key)
            if existing is not None:
                return RunOutcome(existing, created=False)
            current = build_window_frame(session, start, end, model, pathway, organisation)
        self._check_size(current, start, end, pathway, organisation, config, "window")
        with self._run_lock:
            with sessions() as session:  # another thread may have finished it meanwhile
                existing = self._by_key(session, key)
            if existing is not None:
                return RunOutcome(existing, created=False)
            result = self._compute(
                reference,
                current,
                config,
                start,
                end,
                model_version,
                pathway,
                organisation,
                reference_window,
            )
            json_path, html_path = self._write_files(result)
            row = DriftReport(
                id=str(uuid.uuid4()),
                report_key=result.report_key,
                window_start=start,
                window_end=end,
                model_version=model_version,
                pathway=pathway,
                organisation=organisation,
                verdict=result.verdict,
                drifted_features=list(result.drifted_features),
                summary=_summary(result),
                json_path=str(json_path),
                html_path=str(html_path) if html_path else "",
                created_at=datetime.now(UTC),
                created_by=created_by[:64],
            )
            try:
                with transaction(sessions) as session:
                    session.add(row)
            except IntegrityError:  # another replica stored the same key first
                with sessions() as session:
                    existing = self._by_key(session, key)
                if existing is None:
                    raise
                return RunOutcome(existing, created=False)
        with sessions() as session:
            engine = session.get_bind()
        audit_report_event(
            engine,
            actor=created_by,
            role=role,
            organisation=organisation,
            resource=f"drift-report {row.id} created verdict {result.verdict} "
            f"model {model_version} reference {result.reference_kind}",
        )
        alerts = self._raise_alerts(result.json)
        with sessions() as session:
            self.refresh_gauges(session)
        del model_name
        return RunOutcome(report_dict(row, None), created=True, alerts=alerts)

    @staticmethod
    def _check_size(
        frame: Any,
        start: datetime,
        end: datetime,
        pathway: str | None,
        organisation: str | None,
        config: DriftConfig,
        what: str,
    ) -> None:
        patients = 0 if frame.patient is None else len(set(frame.patient.tolist()))
        if patients >= config.min_window_patients and len(frame) >= config.min_window_patient_days:
            return
        scope = "".join(
            [
                f" for pathway {pathway}" if pathway else "",
                f" in organisation {organisation}" if organisation else "",
            ]
        )
        if len(frame) == 0:
            message = (
                f"the {what} {_iso(start)} – {_iso(end)}{scope} holds no patient-days (no "
                "readings in that period): nothing to report on; check the dates and the scope"
            )
        else:
            message = (
                f"the {what} {_iso(start)} – {_iso(end)}{scope} holds {patients} patients and "
                f"{len(frame)} patient-days: a drift verdict needs at least "
                f"{config.min_window_patients} patients and {config.min_window_patient_days} "
                "patient-days; choose a longer period or a wider scope"
            )
        raise InsufficientWindow(
            message, location="reference" if what != "window" else "window_start"
        )

    def _compute(
        self,
        reference: Any,
        current: Any,
        config: DriftConfig,
        start: datetime,
        end: datetime,
        model_version: str,
        pathway: str | None,
        organisation: str | None,
        reference_window: tuple[str, str] | None,
    ) -> Any:
        from monitoring.drift import InsufficientDataError

        job = {
            "reference": reference,
            "current": current,
            "config": config,
            "window_start": start,
            "window_end": end,
            "model_version": model_version,
            "pathway": pathway,
            "organisation": organisation,
            "reference_kind": "local-baseline" if reference_window else "training-sample",
            "reference_window": reference_window,
        }
        try:
            return self._runner.run(job)
        except InsufficientDataError as exc:
            raise InsufficientWindow(str(exc)) from exc

    def _write_files(self, result: Any) -> tuple[Path, Path | None]:
        """``<key>.json`` and ``<key>.html``, written whole (temp file, then rename)."""
        folder = self.reports_dir.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        json_path = folder / f"{result.report_key}.json"
        _write_atomic(
            json_path, json.dumps(result.json, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
        )
        html_path = None
        if result.html:
            html_path = folder / f"{result.report_key}.html"
            _write_atomic(html_path, result.html)
        return json_path, html_path

    def _by_key(self, session: Session, key: str) -> dict[str, Any] | None:
        row = session.scalar(select(DriftReport).where(DriftReport.report_key == key))
        return None if row is None else report_dict(row, self._signoff(session, row.id))

    # -- alerts -----------------------------------------------------------------------------

    def _raise_alerts(self, report_json: dict[str, Any]) -> list[Alert]:
        from monitoring.alerts import alerts_from_report, log_line

        alerts = alerts_from_report(report_json)
        for alert in alerts:
            # logfmt from monitoring.alerts: report key, scope and feature names, no patient data
            log.warning(log_line(alert))
        return alerts

    def _latest_per_scope(self, session: Session) -> list[DriftReport]:
        newest = (
            select(
                DriftReport.pathway,
                DriftReport.organisation,
                func.max(DriftReport.created_at).label("at"),
            )
            .group_by(DriftReport.pathway, DriftReport.organisation)
            .subquery()
        )
        rows = session.scalars(
            select(DriftReport)
            .join(
                newest,
                (
                    (func.coalesce(DriftReport.pathway, "") == func.coalesce(newest.c.pathway, ""))
                    & (
                        func.coalesce(DriftReport.organisation, "")
                        == func.coalesce(newest.c.organisation, "")
                    )
                    & (DriftReport.created_at == newest.c.at)
                ),
            )
            .order_by(DriftReport.created_at.desc())
        )
        seen: set[tuple[str | None, str | None]] = set()
        latest = []
        for r in rows:  # two reports of one scope in the same instant: keep one
            if (r.pathway, r.organisation) not in seen:
                seen.add((r.pathway, r.organisation))
                latest.append(r)
        return latest

    def refresh_gauges(self, session: Session) -> None:
        """Set triage_drift_alert{pathway, kind} from the newest report of each scope."""
        from monitoring.alerts import alerts_from_report, prometheus_samples

        gauges = self._prometheus_gauges()
        values: dict[tuple[str, str], float] = {}
        for r in self._latest_per_scope(session):
            label = r.pathway or "all"
            summary = r.summary or {}
            drift = 1.0 if r.verdict == "drift" else 0.0
            quality = 1.0 if summary.get("data_quality") else 0.0
            values[(label, "drift")] = max(values.get((label, "drift"), 0.0), drift)
            values[(label, "data-quality")] = max(values.get((label, "data-quality"), 0.0), quality)
            report = self._read_json(r)
            if report is not None:
                for name, labels, value in prometheus_samples(report, alerts_from_report(report)):
                    gauges[name].labels(**labels).set(value)
        for (pathway, kind), value in values.items():
            self.metrics.drift_alerts.labels(pathway=pathway, kind=kind).set(value)

    def _prometheus_gauges(self) -> dict[str, Any]:
        """monitoring.alerts' verdict and alert-count gauges, on this app's registry (once)."""
        if self._gauges is None:
            from prometheus_client import Gauge

            from monitoring.alerts import METRIC_ALERTS, METRIC_VERDICT

            registry = self.metrics.registry
            existing = getattr(registry, "_names_to_collectors", {})
            base = ["pathway", "organisation", "model_version"]
            self._gauges = {
                METRIC_VERDICT: existing.get(METRIC_VERDICT)
                or Gauge(
                    METRIC_VERDICT,
                    "Verdict of the newest drift report per scope (0 ok, 1 warning, 2 drift)",
                    base,
                    registry=registry,
                ),
                METRIC_ALERTS: existing.get(METRIC_ALERTS)
                or Gauge(
                    METRIC_ALERTS,
                    "Alerts of the newest drift report per scope, by kind and severity",
                    [*base, "kind", "severity"],
                    registry=registry,
                ),
            }
        return self._gauges

    def alerts(
        self, session: Session, pathway: str | None = None, viewer: Principal | None = None
    ) -> list[dict[str, Any]]:
        """The alerts of the newest report of each scope (drift and data quality apart)."""
        from monitoring.alerts import alerts_from_report

        out: list[dict[str, Any]] = []
        reports = [
            r
            for r in self._latest_per_scope(session)
            if (pathway is None or r.pathway == pathway)
            and (viewer is None or visibility.may_read_report(viewer, r.organisation))
        ]
        signoffs = self._signoffs(session, [r.id for r in reports])
        for r in reports:
            report = self._read_json(r)
            if report is None:
                continue
            s = signoffs.get(r.id)
            for a in alerts_from_report(report):
                out.append(
                    {
                        "kind": a.kind,
                        "severity": a.severity,
                        "text_en": a.text_en,
                        "text_nb": a.text_nb,
                        "features": list(a.features),
                        "report_id": r.id,
                        "report_key": r.report_key,
                        "model_version": r.model_version,
                        "pathway": r.pathway,
                        "organisation": r.organisation,
                        "verdict": r.verdict,
                        "window_start": _utc(r.window_start),
                        "window_end": _utc(r.window_end),
                        "created_at": _utc(r.created_at),
                        "signed_off": s is not None,
                        "sign_off_decision": None if s is None else s.decision,
                    }
                )
        return out

    # -- reading ----------------------------------------------------------------------------

    @staticmethod
    def _signoff(session: Session, report_id: str) -> DriftSignOff | None:
        return session.scalar(
            select(DriftSignOff)
            .where(DriftSignOff.report_id == report_id)
            .order_by(DriftSignOff.signed_at)
            .limit(1)
        )

    @staticmethod
    def _signoffs(session: Session, report_ids: list[str]) -> dict[str, DriftSignOff]:
        out: dict[str, DriftSignOff] = {}
        if not report_ids:
            return out
        for s in session.scalars(
            select(DriftSignOff)
            .where(DriftSignOff.report_id.in_(report_ids))
            .order_by(DriftSignOff.signed_at)
        ):
            out.setdefault(s.report_id, s)  # the first sign-off is the one that stands
        return out

    def list_reports(
        self,
        session: Session,
        *,
        pathway: str | None = None,
        organisation: str | None = None,
        verdict: str | None = None,
        signed_off: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        viewer: Principal | None = None,
    ) -> list[dict[str, Any]]:
        """Index rows, newest first, each with its sign-off (or None); ``viewer``: only the
        reports that caller may read."""
        query = _equal(
            select(DriftReport),
            (DriftReport.pathway, pathway),
            (DriftReport.organisation, organisation),
            (DriftReport.verdict, verdict),
        )
        if viewer is not None:
            query = query.where(visibility.report_filter(viewer))
        # "since/until" select by the date a report was made (the monthly summary's month).
        if since is not None:
            query = query.where(DriftReport.created_at >= _utc(since))
        if until is not None:
            query = query.where(DriftReport.created_at < _utc(until))
        signed = select(DriftSignOff.report_id)
        if signed_off is True:
            query = query.where(DriftReport.id.in_(signed))
        elif signed_off is False:
            query = query.where(DriftReport.id.not_in(signed))
        rows = list(
            session.scalars(
                query.order_by(DriftReport.created_at.desc(), DriftReport.id).limit(limit)
            )
        )
        signoffs = self._signoffs(session, [r.id for r in rows])
        return [report_dict(r, signoffs.get(r.id)) for r in rows]

    def get_row(
        self, session: Session, report_id: str, viewer: Principal | None = None
    ) -> DriftReport:
        row = session.get(DriftReport, report_id)
        if row is None or (
            viewer is not None and not visibility.may_read_report(viewer, row.organisation)
        ):
            raise NotFound(f"drift report {report_id} not found")
        return row

    def get_report(
        self, session: Session, report_id: str, viewer: Principal | None = None
    ) -> dict[str, Any]:
        """The index row, its sign-off and the full report JSON."""
        row = self.get_row(session, report_id, viewer)
        report = self._read_json(row)
        if report is None:
            raise NotFound(f"the JSON file of drift report {report_id} is missing")
        return {**report_dict(row, self._signoff(session, row.id)), "report": report}

    def html_path(self, session: Session, report_id: str, viewer: Principal | None = None) -> Path:
        row = self.get_row(session, report_id, viewer)
        path = Path(row.html_path) if row.html_path else None
        if path is None or not path.is_file():
            raise NotFound(f"drift report {report_id} has no HTML file")
        return path

    @staticmethod
    def _read_json(row: DriftReport) -> dict[str, Any] | None:
        try:
            data = json.loads(Path(row.json_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.error("drift report %s: JSON file %s unreadable", row.id, row.json_path)
            return None
        return data if isinstance(data, dict) else None

    # -- sign-off ---------------------------------------------------------------------------

    def sign_off(
        self,
        session: Session,
        report_id: str,
        decision: str,
        comment: str,
        *,
        signed_by: str,
        role: str,
        signer: Principal | None = None,
    ) -> dict[str, Any]:
        """Record the decision on a report: once, never edited (a second one is a 409).

        ``signer``: an organisation's report is signed by that organisation only; any other
        caller gets the 404 of a report that does not exist.
        """
        if decision not in SIGN_OFF_DECISIONS:
            raise InvalidInput(
                f"decision must be one of {', '.join(SIGN_OFF_DECISIONS)}", location="decision"
            )
        comment = comment.strip()
        if len(comment) < 3:
            raise InvalidInput("write a comment of at least 3 characters", location="comment")
        # A drift sign-off is about a model, never about a patient.
        refuse_person_number(comment, "comment")
        # Lock the report row (PostgreSQL) so two concurrent sign-offs cannot both pass the check.
        report = session.scalar(
            select(DriftReport).where(DriftReport.id == report_id).with_for_update()
        )
        if report is None or (
            signer is not None and not visibility.may_sign_report(signer, report.organisation)
        ):
            raise NotFound(f"drift report {report_id} not found")
        existing = self._signoff(session, report_id)
        if existing is not None:
            raise Conflict(
                f"drift report {report_id} was already signed off "
                f"({existing.decision}, by {existing.signed_by} at "
                f"{_iso(existing.signed_at)}); sign-offs are immutable"
            )
        signoff = DriftSignOff(
            id=str(uuid.uuid4()),
            report_id=report_id,
            decision=decision,
            comment=comment,
            signed_by=signed_by[:64],
            role=role[:32],
            signed_at=datetime.now(UTC),
        )
        session.add(signoff)
        session.flush()
        # Audited once the sign-off is committed (a rolled-back one is not a decision), with the
        # report id and the model version, whichever path (API, web page, CLI) signed it.
        engine = session.get_bind()
        resource = f"drift-report {report_id} signed-off {decision} model {report.model_version}"
        organisation = report.organisation

        def _audit(_session: Session) -> None:
            audit_report_event(
                engine, actor=signed_by, role=role, organisation=organisation, resource=resource
            )

        event.listen(session, "after_commit", _audit, once=True)
        return signoff_dict(signoff)

    # -- schedule and governance export -----------------------------------------------------

    def scheduled_scopes(
        self, session: Session, window_start: datetime, window_end: datetime
    ) -> list[str | None]:
        """Overall (None) and every pathway that has assessments in the window."""
        pathways = session.scalars(
            select(Patient.pathway_id)
            .join(Reading, Reading.patient_id == Patient.id)
            .where(
                Reading.effective_s >= _epoch_s(window_start),
                Reading.effective_s < _epoch_s(window_end),
            )
            .distinct()
        )
        return [None, *sorted(set(pathways))]

    def run_schedule(
        self,
        sessions: sessionmaker[Session],
        now: datetime,
        window_days: int,
        min_interval: timedelta | None = None,
    ) -> list[ScheduledRun]:
        """Reports for the last ``window_days`` overall and per pathway; small windows skipped.

        A scope whose newest scheduled report is younger than ``min_interval`` is not due yet
        (a restart, or the demo's own first run, does not produce a second report).
        """
        end = _utc(now).replace(microsecond=0)
        start = end - timedelta(days=window_days)
        try:
            self.reference()
        except DriftUnavailable as exc:
            log.warning("scheduled drift reports not run: %s", exc.message)
            return []
        with sessions() as session:
            scopes = self.scheduled_scopes(session, start, end)
            recent = (
                set()
                if min_interval is None
                else {
                    r.pathway
                    for r in session.scalars(
                        select(DriftReport).where(
                            DriftReport.created_by == "schedule",
                            DriftReport.organisation.is_(None),
                            DriftReport.created_at > end - min_interval,
                        )
                    )
                }
            )
        runs = []
        for pathway in scopes:
            scope = pathway or "all pathways"
            if pathway in recent:
                runs.append(ScheduledRun(pathway, None, None, skipped="not due yet"))
                continue
            try:
                outcome = self.run_report(sessions, start, end, pathway, created_by="schedule")
            except InsufficientWindow as exc:
                log.info("scheduled drift report skipped (%s): %s", scope, exc.message)
                runs.append(ScheduledRun(pathway, None, None, skipped=exc.message))
                continue
            report = outcome.report
            log.info(
                "scheduled drift report %s (%s): verdict %s, %s",
                report["id"],
                scope,
                report["verdict"],
                "new" if outcome.created else "already stored",
            )
            runs.append(ScheduledRun(pathway, report["id"], report["verdict"]))
        return runs

    def export_summary(self, session: Session, month: str, folder: Path) -> Path:
        """governance/monitoring/drift-summary-YYYY-MM.md from the index and the sign-offs."""
        from monitoring.summary import write_monthly_summary

        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
            raise InvalidInput(f"month must look like 2026-11, got {month!r}", location="month")
        first = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
        after = (first + timedelta(days=32)).replace(day=1)
        rows = self.list_reports(session, since=first, until=after, limit=100_000)
        reports = [
            {
                **r,
                "window_start": _iso(r["window_start"]),
                "window_end": _iso(r["window_end"]),
                "created_at": _iso(r["created_at"]),
            }
            for r in rows
        ]
        signoffs = [
            {**r["sign_off"], "signed_at": _iso(r["sign_off"]["signed_at"])}
            for r in rows
            if r["sign_off"]
        ]
        return write_monthly_summary(reports, signoffs, month, folder)


class ReportRunner:
    """Runs monitoring.drift.run_drift_report in one worker process (spawned, kept for reuse).

    numpy, pandas and Evidently work there, not in the serving process: a report in a thread of
    the serving process raised scoring p99 from 0.3 ms to 2.6 ms. A broken worker (killed,
    out of memory) is replaced on the next run.
    """

    def __init__(self) -> None:
        self._pool: Any = None
        self._lock = threading.Lock()

    def run(self, job: dict[str, Any]) -> Any:
        from concurrent.futures.process import BrokenProcessPool

        for attempt in range(2):
            pool = self._get()
            try:
                return pool.submit(run_report_job, job).result()
            except BrokenProcessPool:
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _get(self) -> Any:
        with self._lock:
            if self._pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn")
                )
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def run_report_job(job: dict[str, Any]) -> Any:
    """The report job, in the worker process (module-level, so it pickles)."""
    from monitoring.drift import run_drift_report

    args = dict(job)
    return run_drift_report(args.pop("reference"), args.pop("current"), args.pop("config"), **args)


def audit_report_event(
    engine: Any,
    *,
    actor: str,
    role: str,
    organisation: str | None,
    resource: str,
    status: int = 201,
) -> None:
    """A record in the audit chain naming the drift report (its id and model version)."""
    from service.security.audit import AuditEvent, append_events

    try:
        append_events(
            engine,
            [
                AuditEvent(
                    datetime.now(UTC),
                    actor[:64],
                    role[:32],
                    organisation,
                    None,
                    "write",
                    resource[:200],
                    "audit-control",
                    status,
                )
            ],
        )
    except Exception:  # the report stands; a lost audit row is loud in the log
        log.exception("audit row for %s could not be written", resource[:80])


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
