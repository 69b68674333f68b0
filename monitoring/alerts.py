"""Alert entries from a drift report: pure functions, no I/O.

The service turns each :class:`Alert` into a Prometheus sample (:func:`prometheus_samples`), a
log line (:func:`log_line`) and a list entry the ML-engineer and compliance roles see. Alerts are
derived from the report's JSON, so they can be rebuilt from a stored report at any time.
Data-quality alerts are separate from statistical-drift alerts (issue 7 §4).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["critical", "warning"]
AlertKind = Literal["drift", "prediction_drift", "data_quality", "performance", "pathway_mix"]
METRIC_ALERTS = "triage_drift_alerts"
METRIC_VERDICT = "triage_drift_verdict"
VERDICT_LEVEL = {"ok": 0, "warning": 1, "drift": 2}


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    severity: Severity
    report_key: str
    model_version: str
    pathway: str | None
    organisation: str | None
    text_en: str
    text_nb: str
    features: list[str] = field(default_factory=list)


def _scope(report: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "report_key": str(report["report_key"]),
        "model_version": str(report["model_version"]),
        "pathway": report.get("pathway"),
        "organisation": report.get("organisation"),
    }


def _where(report: Mapping[str, Any]) -> tuple[str, str]:
    pathway = report.get("pathway") or "all pathways"
    pathway_nb = report.get("pathway") or "alle forløp"
    window = f"{report['window_start']} – {report['window_end']}"
    return f"{pathway}, {window}", f"{pathway_nb}, {window}"


def alerts_from_report(report: Mapping[str, Any]) -> list[Alert]:
    """Every alert a stored report (``DriftReportResult.json``) raises; empty when all is well."""
    scope = _scope(report)
    where_en, where_nb = _where(report)
    config = report.get("config") or {}
    alerts: list[Alert] = []
    drifted = list(report.get("drifted_features") or [])
    verdict = report.get("verdict")
    if verdict in ("drift", "warning") and drifted:
        from monitoring.narrative import feature_label

        names = ", ".join(feature_label(f, "en") for f in drifted)
        names_nb = ", ".join(feature_label(f, "nb") for f in drifted)
        word_en = "Data drift" if verdict == "drift" else "Possible data drift"
        word_nb = "Datadrift" if verdict == "drift" else "Mulig datadrift"
        alerts.append(
            Alert(
                "drift",
                "critical" if verdict == "drift" else "warning",
                **scope,
                text_en=f"{word_en} in {len(drifted)} feature(s) ({where_en}): {names}",
                text_nb=f"{word_nb} i {len(drifted)} variabel(er) ({where_nb}): {names_nb}",
                features=drifted,
            )
        )
    prediction = report.get("prediction_drift") or {}
    if prediction.get("drifted"):
        cur, ref = (
            prediction.get("mean_probability_current"),
            prediction.get("mean_probability_reference"),
        )
        means = "" if cur is None or ref is None else f"; mean risk {ref:.3f} → {cur:.3f}"
        alerts.append(
            Alert(
                "prediction_drift",
                "critical",
                **scope,
                text_en=f"The model's predictions drifted ({where_en}){means}",
                text_nb=f"Modellens prediksjoner har drevet ({where_nb}){means}",
                features=["probability"],
            )
        )
    # A changed pathway mix is a note in the report, not an alert: the features were compared
    # with the reference reweighted to the window's mix.
    for flag in report.get("data_quality") or []:
        severity: Severity = "warning" if flag["kind"] == "missing" else "critical"
        alerts.append(
            Alert(
                "data_quality",
                severity,
                **scope,
                text_en=f"Data quality ({where_en}): {flag['text_en']}",
                text_nb=f"Datakvalitet ({where_nb}): {flag['text_nb']}",
                features=[str(flag["column"])],
            )
        )
    alerts += _performance_alerts(report, scope, where_en, where_nb, config)
    return alerts


def _performance_alerts(
    report: Mapping[str, Any],
    scope: dict[str, Any],
    where_en: str,
    where_nb: str,
    config: Mapping[str, Any],
) -> list[Alert]:
    perf = report.get("performance")
    if not perf:
        return []
    min_auroc = float(config.get("min_auroc", 0.70))
    max_cal = float(config.get("max_calibration_error", 0.05))
    out = []
    auroc = perf.get("roc_auc")
    if auroc is not None and auroc < min_auroc:
        out.append(
            Alert(
                "performance",
                "critical",
                **scope,
                text_en=f"AUROC {auroc:.3f} on {perf['n_outcomes']} known outcomes is below "
                f"{min_auroc:.2f} ({where_en})",
                text_nb=f"AUROC {auroc:.3f} på {perf['n_outcomes']} kjente utfall er under "
                f"{min_auroc:.2f} ({where_nb})",
            )
        )
    citl = float(perf["calibration_in_the_large"])
    ece = float(perf["expected_calibration_error"])
    over_time = report.get("performance_over_time") or {}
    if abs(citl) > max_cal or ece > max_cal or over_time.get("recalibration_proposed"):
        # The remedy for calibration drift on recorded outcomes is a local recalibration: a new
        # model version that goes through the same promotion gate (training/recalibrate.py).
        org = scope.get("organisation")
        command = f"triage recalibrate --organisation {org or '<orgnr>'}"
        slope = perf.get("calibration_slope")
        slope_text = "" if slope is None else f", slope {slope:.2f}"
        out.append(
            Alert(
                "performance",
                "warning",
                **scope,
                text_en=f"Calibration off: observed minus predicted event rate {citl:+.3f}, "
                f"expected calibration error {ece:.3f}{slope_text} (limit {max_cal:.2f}; "
                f"{where_en}). Proposal: recalibrate on the recorded outcomes ({command}), then "
                "triage promote",
                text_nb=f"Kalibreringen avviker: observert minus predikert hendelsesrate {citl:+.3f}, "
                f"forventet kalibreringsfeil {ece:.3f}{slope_text} (grense {max_cal:.2f}; "
                f"{where_nb}). Forslag: rekalibrer på de registrerte utfallene ({command}), "
                "deretter triage promote",
            )
        )
    return out


def alerts_for(result: Any) -> list[Alert]:
    """Alerts of a fresh :class:`~monitoring.drift.DriftReportResult`."""
    return alerts_from_report(result.json)


def prometheus_samples(
    report: Mapping[str, Any], alerts: list[Alert]
) -> list[tuple[str, dict[str, str], float]]:
    """(metric name, labels, value) samples: the verdict level and alert counts by kind/severity.

    Labels carry pathway and organisation, never a patient; the service sets its gauges from these.
    """
    base = {
        "pathway": str(report.get("pathway") or "all"),
        "organisation": str(report.get("organisation") or "all"),
        "model_version": str(report["model_version"]),
    }
    samples = [(METRIC_VERDICT, dict(base), float(VERDICT_LEVEL[str(report["verdict"])]))]
    counts = Counter((a.kind, a.severity) for a in alerts)
    for kind in ("drift", "prediction_drift", "data_quality", "performance", "pathway_mix"):
        for severity in ("critical", "warning"):
            samples.append(
                (
                    METRIC_ALERTS,
                    {**base, "kind": kind, "severity": severity},
                    float(counts.get((kind, severity), 0)),
                )
            )
    return samples


def log_line(alert: Alert) -> str:
    """One structured line (logfmt) per alert; English text, no patient data."""

    def quote(value: object) -> str:
        text = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'

    fields = {
        "event": "drift_alert",
        "kind": alert.kind,
        "severity": alert.severity,
        "report_key": alert.report_key,
        "model_version": alert.model_version,
        "pathway": alert.pathway or "all",
        "organisation": alert.organisation or "all",
        "features": ",".join(alert.features),
        "text": alert.text_en,
    }
    return " ".join(f"{k}={quote(v)}" for k, v in fields.items())
