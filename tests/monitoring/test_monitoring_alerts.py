"""Alerts from a report: drift and data quality apart, Prometheus samples, log lines."""

from __future__ import annotations

import re

from monitoring_synth import N_CURRENT_PATIENTS, report, simulate_window

from monitoring.alerts import (
    METRIC_ALERTS,
    METRIC_VERDICT,
    alerts_for,
    alerts_from_report,
    log_line,
    prometheus_samples,
)


def test_quiet_window_raises_no_alert(reference, fast_config):
    frame = simulate_window(N_CURRENT_PATIENTS, seed=51)
    frame.outcome = None  # outcomes not known yet: drift only
    result = report(reference, frame, fast_config)
    assert result.verdict == "ok"
    assert alerts_for(result) == []
    samples = prometheus_samples(result.json, [])
    assert (
        METRIC_VERDICT,
        {"pathway": "all", "organisation": "all", "model_version": "test-1"},
        0.0,
    ) in samples
    assert all(value == 0 for name, _, value in samples if name == METRIC_ALERTS)


def test_scale_in_pounds_raises_a_drift_alert_and_separate_data_quality_alerts(
    reference, fast_config
):
    current = simulate_window(N_CURRENT_PATIENTS, seed=52, weight_pounds_from_day=7)
    result = report(reference, current, fast_config)
    alerts = alerts_for(result)
    kinds = [a.kind for a in alerts]
    assert kinds.count("drift") == 1
    drift = next(a for a in alerts if a.kind == "drift")
    assert drift.severity == "critical" and "weight_kg_delta_baseline" in drift.features
    assert "Datadrift" in drift.text_nb and "Data drift" in drift.text_en
    quality = [a for a in alerts if a.kind == "data_quality"]
    assert quality and all(a.severity == "critical" for a in quality)
    assert any("Body weight" in a.text_en and "out of range" in a.text_en for a in quality)
    assert any("Kroppsvekt" in a.text_nb for a in quality)
    # Rebuilt from the stored JSON, the alerts are the same.
    assert alerts_from_report(result.json) == alerts
    samples = {
        (name, labels.get("kind"), labels.get("severity")): value
        for name, labels, value in prometheus_samples(result.json, alerts)
    }
    assert samples[(METRIC_VERDICT, None, None)] == 2.0
    assert samples[(METRIC_ALERTS, "data_quality", "critical")] == len(quality)
    assert samples[(METRIC_ALERTS, "drift", "critical")] == 1.0


def test_poor_performance_on_known_outcomes_alerts_even_without_drift(reference, fast_config):
    """The toy scorer in monitoring_synth is neither sharp nor calibrated on its own outcomes."""
    result = report(reference, simulate_window(N_CURRENT_PATIENTS, seed=51), fast_config)
    assert result.verdict == "ok" and result.performance is not None
    alerts = alerts_for(result)
    assert alerts and {a.kind for a in alerts} == {"performance"}
    auroc = result.performance.roc_auc
    assert (auroc is not None and auroc < 0.7) or (
        abs(result.performance.calibration_in_the_large) > 0.05
        or result.performance.expected_calibration_error > 0.05
    )
    # Over time: calibration and AUROC per week, and a proposal to recalibrate.
    over_time = result.json["performance_over_time"]
    assert over_time["periods"] and all("roc_auc" in p for p in over_time["periods"])
    assert sum(p["n_outcomes"] for p in over_time["periods"]) == result.performance.n_outcomes
    if over_time["recalibration_proposed"]:
        assert any("recalibrate" in a.text_en for a in alerts)
        assert any("rekalibrer" in a.text_nb for a in alerts)
        assert any("recalibrate" in s for s in result.json["summary"]["en"]["next_steps"])


def test_log_line_is_one_logfmt_line_without_patient_identifiers():
    report_json = {
        "report_key": "k" * 32,
        "model_version": "1.0",
        "pathway": "copd",
        "organisation": None,
        "window_start": "2026-01-01T00:00:00Z",
        "window_end": "2026-01-08T00:00:00Z",
        "verdict": "drift",
        "drifted_features": ["spo2_pct_latest"],
        "data_quality": [],
        "prediction_drift": {
            "drifted": True,
            "mean_probability_current": 0.2,
            "mean_probability_reference": 0.1,
        },
        "performance": {
            "roc_auc": 0.6,
            "n_outcomes": 120,
            "calibration_in_the_large": -0.1,
            "expected_calibration_error": 0.12,
        },
        "config": {"min_auroc": 0.7, "max_calibration_error": 0.05},
    }
    alerts = alerts_from_report(report_json)
    assert [a.kind for a in alerts] == ["drift", "prediction_drift", "performance", "performance"]
    assert "0.100 → 0.200" in alerts[1].text_en
    line = log_line(alerts[0])
    assert "\n" not in line
    assert line.startswith('event="drift_alert" kind="drift" severity="critical"')
    assert 'pathway="copd"' in line and 'organisation="all"' in line
    assert not re.search(r"\d{11}", line)


def test_calibration_drift_on_recorded_outcomes_proposes_a_recalibration():
    from monitoring.alerts import alerts_from_report

    report_json = {
        "report_key": "c" * 32,
        "model_version": "1.0",
        "pathway": "heart-failure",
        "organisation": "983974899",
        "window_start": "2026-01-01T00:00:00Z",
        "window_end": "2026-01-08T00:00:00Z",
        "verdict": "ok",
        "drifted_features": [],
        "data_quality": [],
        "performance": {
            "n_outcomes": 400,
            "roc_auc": 0.8,
            "calibration_in_the_large": 0.09,
            "expected_calibration_error": 0.08,
        },
    }
    calibration = [a for a in alerts_from_report(report_json) if "Calibration" in a.text_en]
    assert len(calibration) == 1
    assert "triage recalibrate --organisation 983974899" in calibration[0].text_en
    assert "rekalibrer" in calibration[0].text_nb
