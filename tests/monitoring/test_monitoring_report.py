"""The report itself: HTML size, idempotency key, performance and calibration, scope, slices."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from monitoring_synth import N_CURRENT_PATIENTS, T0_S, WINDOW, report, simulate_window

from models.features import DAY_S
from monitoring.config import DriftConfig
from monitoring.data import MonitoringFrame, reference_hash
from monitoring.drift import InsufficientDataError, evidently_library_path, report_key

MB = 1024 * 1024


def test_html_is_small_and_loads_evidently_from_the_configured_url(full_report):
    html = full_report.html
    assert len(html.encode()) < 3 * MB
    assert '<script src="/api/v1/monitoring/evidently.js"></script>' in html
    # Plain language in three languages, then the technical appendix with the code names.
    assert 'lang="en"' in html and 'lang="nb"' in html and 'lang="nn"' in html
    assert "Datakvalitet" in html and "Technical appendix" in html
    assert full_report.report_key in html
    assert "synthetic data" in html  # performance is shown, so the caveat is too


def test_html_size_does_not_grow_with_rows_because_raw_rows_are_left_out(reference):
    config = DriftConfig(slice_by=())
    small = report(reference, simulate_window(200, seed=21), config)
    large = report(reference, simulate_window(1200, seed=22), config)
    assert len(large.html) < 1.25 * len(small.html)
    assert len(large.html.encode()) < 3 * MB


def test_standalone_html_embeds_the_library_and_stays_bounded(reference):
    config = DriftConfig(slice_by=(), html_standalone=True)
    result = report(reference, simulate_window(N_CURRENT_PATIENTS, seed=23), config)
    library_bytes = os.path.getsize(evidently_library_path())
    assert "/api/v1/monitoring/evidently.js" not in result.html
    assert library_bytes < len(result.html.encode()) < library_bytes + 3 * MB


def test_json_is_strict_json_and_names_the_verdict_inputs(full_report):
    text = json.dumps(full_report.json, allow_nan=False)  # no NaN leaks to machines
    payload = json.loads(text)
    assert payload["verdict"] == full_report.verdict
    assert payload["report_key"] == full_report.report_key
    assert {f["feature"] for f in payload["features"]} >= {"spo2_pct_latest", "age_band"}
    assert payload["config_fingerprint"] == DriftConfig().fingerprint()
    assert payload["evidently"]["version"].startswith("0.7")


def test_evidently_draws_every_tested_feature_with_the_verdicts_threshold(full_report):
    metrics = [m["name"] for m in full_report.json["evidently"]["metrics"]]
    tested = [f for f in full_report.features if f.score is not None]
    assert len(tested) >= 20
    for feature in tested:
        assert any(
            f"column={feature.feature}" in name and f"threshold={feature.threshold}" in name
            for name in metrics
        ), feature.feature


def test_same_window_gives_the_same_key_and_the_same_json(reference, fast_config):
    current = simulate_window(N_CURRENT_PATIENTS, seed=31)
    first = report(reference, current, fast_config)
    second = report(reference, current, fast_config)
    assert first.report_key == second.report_key
    assert json.dumps(first.json, sort_keys=True) == json.dumps(second.json, sort_keys=True)


def test_key_changes_with_window_model_scope_and_reference(reference):
    base = {
        **WINDOW,
        "model_version": "1.0.0",
        "pathway": "copd",
        "organisation": None,
        "reference_hash": reference_hash(reference),
    }
    key = report_key(**base)
    assert report_key(**base) == key
    assert (
        len(
            {
                key,
                *(
                    report_key(**{**base, field: value})
                    for field, value in (
                        ("window_end", WINDOW["window_end"] + DAY_S),
                        ("model_version", "1.0.1"),
                        ("pathway", "heart-failure"),
                        ("organisation", "974557746"),
                        ("reference_hash", "0" * 64),
                    )
                ),
            }
        )
        == 6
    )
    # The same instant written as epoch seconds or as an ISO time is the same window.
    iso = {**base, "window_start": "2026-01-01T01:00:00+01:00"}
    assert report_key(**iso) == key


def test_reference_hash_follows_the_content(reference):
    changed = reference.take(np.arange(len(reference)))
    assert reference_hash(changed) == reference_hash(reference)
    changed.X[0, 0] = changed.X[0, 0] + 1 if np.isfinite(changed.X[0, 0]) else 1.0
    assert reference_hash(changed) != reference_hash(reference)


def test_rows_outside_the_window_or_pathway_are_left_out(reference, fast_config):
    current = simulate_window(N_CURRENT_PATIENTS, seed=32)
    result = report(reference, current, fast_config, pathway="heart-failure")
    hf_rows = int((current.pathway == "heart-failure").sum())
    assert result.n_current == hf_rows
    assert result.json["current_rows_outside_scope"] == len(current) - hf_rows
    assert result.json["reference_scope"] == "pathway heart-failure"
    assert result.n_reference == int((reference.pathway == "heart-failure").sum())


def test_too_few_rows_is_no_verdict(reference, fast_config):
    current = simulate_window(N_CURRENT_PATIENTS, seed=33)
    with pytest.raises(InsufficientDataError, match="no patient-days in the window"):
        report(
            reference,
            current,
            fast_config,
            window_start=T0_S + 100 * DAY_S,
            window_end=T0_S + 101 * DAY_S,
        )
    few = current.take(np.isin(current.patient, np.unique(current.patient)[:10]))
    with pytest.raises(InsufficientDataError, match=r"10 patients .* at least 30 patients"):
        report(reference, few, fast_config)


def test_slices_per_pathway_and_organisation(full_report):
    by = {(s.by, s.value): s for s in full_report.slices}
    assert {v for b, v in by if b == "organisation"} == {"974557746", "983974899"}
    assert {v for b, v in by if b == "pathway"} == {
        "copd",
        "heart-failure",
        "oncology",
        "post-operative",
    }
    for s in full_report.slices:
        # Slices locate a change; with nothing drifted overall there is nothing to locate.
        if full_report.drifted_features and s.n_patients >= DriftConfig().min_slice_patients:
            assert s.verdict in ("ok", "drift")
        else:
            assert s.verdict is None and s.reason.startswith("not examined")


def test_device_fault_in_one_organisation_shows_in_that_slice(reference):
    config = DriftConfig(render_html=False, slice_by=("organisation",))
    clean = simulate_window(N_CURRENT_PATIENTS, seed=34)
    faulty = simulate_window(N_CURRENT_PATIENTS, seed=34, spo2_offset=-3.0)
    bad_org = clean.organisation == "983974899"
    mixed = clean.take(np.arange(len(clean)))
    mixed.X[bad_org] = faulty.X[bad_org]
    result = report(reference, mixed, config)
    verdicts = {s.value: s for s in result.slices}
    assert verdicts["983974899"].verdict == "drift"
    assert "spo2_pct_latest" in verdicts["983974899"].drifted_features
    assert "spo2_pct_latest" not in verdicts["974557746"].drifted_features
    # ... and the plain-language summary says where.
    assert any("organisation 983974899" in line for line in result.json["summary"]["en"]["changes"])


# ---------------------------------------------------------------------------------------------
# performance and calibration


def _calibrated_window(seed: int, scale: float = 1.0) -> MonitoringFrame:
    """A window whose outcomes are drawn from its own probabilities (then optionally rescaled)."""
    frame = simulate_window(N_CURRENT_PATIENTS, seed=seed)
    rng = np.random.default_rng(seed)
    p = np.clip(rng.beta(1.2, 6.0, len(frame)), 0.001, 0.999)
    y = (rng.random(len(frame)) < p).astype(np.float64)
    y[: len(y) // 10] = np.nan  # outcomes not yet known for some rows
    return MonitoringFrame(
        X=frame.X,
        probability=np.clip(p * scale, 0, 0.999),
        pathway=frame.pathway,
        organisation=frame.organisation,
        scored_at=frame.scored_at,
        outcome=y,
        raw=frame.raw,
        patient=frame.patient,
    )


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    order = np.argsort(p)
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def test_performance_with_outcomes_is_computed_on_known_outcomes_only(reference, fast_config):
    current = _calibrated_window(41)
    result = report(reference, current, fast_config)
    perf = result.performance
    assert perf is not None
    known = np.isfinite(current.outcome)
    assert perf.n_outcomes == int(known.sum())
    assert perf.n_positive == int(current.outcome[known].sum())
    assert perf.roc_auc == pytest.approx(
        _auroc(current.outcome[known], current.probability[known]), abs=1e-6
    )
    assert abs(perf.calibration_in_the_large) < 0.02
    assert perf.calibration_slope == pytest.approx(1.0, abs=0.25)
    assert perf.expected_calibration_error < 0.05
    assert sum(b.n for b in perf.bins) == perf.n_outcomes
    assert "synthetic data" in perf.note
    assert result.json["performance"]["brier"] == pytest.approx(perf.brier)


def test_overconfident_model_shows_as_miscalibration_and_proposes_recalibration(
    reference, fast_config
):
    result = report(reference, _calibrated_window(42, scale=2.0), fast_config)
    perf = result.performance
    assert perf is not None
    assert perf.calibration_in_the_large < -0.05  # predicts twice the observed risk
    assert perf.expected_calibration_error > 0.05
    assert result.json["performance_over_time"]["recalibration_proposed"]
    assert any("recalibrate" in step for step in result.json["summary"]["en"]["next_steps"])


def test_a_calibrated_model_is_not_sent_to_recalibration(reference, fast_config):
    result = report(reference, _calibrated_window(47), fast_config)
    assert not result.json["performance_over_time"]["recalibration_proposed"]


def test_no_outcomes_means_no_performance(reference, fast_config):
    frame = simulate_window(N_CURRENT_PATIENTS, seed=43)
    unlabeled = MonitoringFrame(
        X=frame.X,
        probability=frame.probability,
        pathway=frame.pathway,
        organisation=frame.organisation,
        scored_at=frame.scored_at,
    )
    assert report(reference, unlabeled, fast_config).performance is None


def test_performance_uses_every_outcome_and_the_report_is_repeatable(reference, fast_config):
    current = _calibrated_window(44)
    config = fast_config.model_copy(update={"max_rows": 600})
    result = report(reference, current, config)
    assert result.n_current == len(current)
    assert result.performance is not None
    assert result.performance.n_outcomes == int(np.isfinite(current.outcome).sum())
    again = report(reference, current, config)
    assert again.json == result.json  # seeded sampling: the same window gives the same report


def test_reference_without_scores_still_gives_feature_drift(reference, fast_config):
    unscored = MonitoringFrame(
        X=reference.X,
        probability=np.full(len(reference), np.nan),
        pathway=reference.pathway,
        organisation=reference.organisation,
        scored_at=reference.scored_at,
    )
    result = report(
        unscored, simulate_window(N_CURRENT_PATIENTS, seed=45, spo2_offset=-3.0), fast_config
    )
    assert result.prediction_drift_score is None and not result.prediction_drift
    assert result.json["prediction_drift"]["score"] is None
    assert result.drifted_features == ["spo2_pct_latest"]


def test_nothing_comparable_is_no_verdict_rather_than_ok(reference, fast_config):
    frame = simulate_window(N_CURRENT_PATIENTS, seed=46)
    empty = MonitoringFrame(
        X=np.full_like(frame.X, np.nan),
        probability=frame.probability,
        pathway=frame.pathway,
        organisation=frame.organisation,
        scored_at=frame.scored_at,
    )
    with pytest.raises(InsufficientDataError, match="no feature"):
        report(reference, empty, fast_config)
