"""The monthly Markdown summary for governance/monitoring/."""

from __future__ import annotations

import pytest

from monitoring.summary import monthly_summary, write_monthly_summary

REPORTS = [
    {
        "id": "r1",
        "window_start": "2026-01-05T00:00:00Z",
        "window_end": "2026-01-06T00:00:00Z",
        "model_version": "1.0.0",
        "pathway": "copd",
        "organisation": "974557746",
        "verdict": "drift",
        "drifted_features": ["spo2_pct_latest"],
        "data_quality": [{"text_en": "10.0 % of SpO2 values out of range 70–100 %"}],
    },
    {
        "id": "r2",
        "window_start": "2026-01-06T00:00:00Z",
        "window_end": "2026-01-07T00:00:00Z",
        "model_version": "1.0.0",
        "pathway": None,
        "verdict": "ok",
        "drifted_features": [],
    },
    {
        "id": "r3",
        "window_start": "2026-01-07T00:00:00Z",
        "window_end": "2026-01-08T00:00:00Z",
        "model_version": "1.0.0",
        "pathway": "heart-failure",
        "verdict": "warning",
        "drifted_features": ["weight_kg_change_1d"],
        "data_quality": 0,
    },
    {
        "id": "r0",
        "window_start": "2025-12-31T00:00:00Z",
        "window_end": "2026-01-01T00:00:00Z",
        "model_version": "1.0.0",
        "verdict": "drift",
    },
]
SIGNOFFS = [
    {
        "report_id": "r1",
        "decision": "escalated",
        "signed_by": "Kari Nordmann (compliance)",
        "signed_at": "2026-01-05T12:00:00Z",
        "comment": "Oximeter firmware | vendor ticket; patient 01015012345 affected\nsee log",
    },
    {
        "report_id": "r3",
        "decision": "action-required",
        "signed_by": "Kari Nordmann",
        "signed_at": "2026-02-01T08:00:00Z",
        "comment": "Weight scale vendor asked; owner: Ola",
    },
    {
        "report_id": "r2",
        "decision": "accepted",
        "signed_by": "Ola Nordmann",
        "signed_at": "2026-01-06T09:00:00Z",
        "comment": "",
    },
]


def test_summary_lists_reports_signoffs_and_open_items():
    text = monthly_summary(REPORTS, SIGNOFFS, "2026-01")
    assert text.startswith("# Drift monitoring, 2026-01")
    assert "Reports: 3 — ok 1, warning 1, drift 1." in text
    assert "synthetic data" in text
    assert "| DRIFT | spo2_pct_latest | 10.0 % of SpO2 values out of range 70–100 % |" in text
    assert "Escalated to ML engineering / Eskalert til ML-teamet" in text
    assert "Kari Nordmann (compliance) | 2026-01-05T12:00:00Z" in text
    assert "Action required / Tiltak kreves" in text  # the service spells it action-required
    assert "None: every warning or drift verdict of the month has a sign-off." in text
    assert "2025-12-31" not in text  # another month


def test_comments_cannot_break_the_table_or_leak_a_fodselsnummer():
    text = monthly_summary(REPORTS, SIGNOFFS, "2026-01")
    assert "01015012345" not in text
    assert "[id removed]" in text
    assert "Oximeter firmware \\| vendor ticket" in text
    row = next(line for line in text.splitlines() if "Oximeter" in line)
    assert row.endswith("see log |")


def test_empty_month_and_bad_month():
    text = monthly_summary([], [], "2026-02")
    assert "No drift reports" in text and "No sign-offs" in text
    with pytest.raises(ValueError, match="2026-01"):
        monthly_summary([], [], "January")


def test_written_file_name(tmp_path):
    path = write_monthly_summary(REPORTS, SIGNOFFS, "2026-01", tmp_path / "governance")
    assert path.name == "drift-summary-2026-01.md"
    assert path.read_text(encoding="utf-8") == monthly_summary(REPORTS, SIGNOFFS, "2026-01")


def test_unsigned_warnings_are_open_items():
    text = monthly_summary(REPORTS, SIGNOFFS[:1], "2026-01")
    assert "**awaiting review**" in text  # r2 (ok) and r3 (warning) have no sign-off here
    assert "2026-01-07T00:00:00Z heart-failure: WARNING, not signed off" in text
    assert "2026-01-06T00:00:00Z all: OK" not in text  # an ok verdict is not an open item
