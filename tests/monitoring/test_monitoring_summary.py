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
    # r3's sign-off asks for an action: an open item until it is done (the old summary called
    # the month clean here).
    assert "- ACTION REQUIRED: report r3 made 2026-01-07" in text and "owner: Ola" in text
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
    assert "- WARNING: report r3 made 2026-01-07 (heart-failure, all organisations" in text
    assert "report r2" not in text.split("## Open items")[1]  # an ok verdict is not open


def test_reports_belong_to_the_month_they_were_made_in():
    late = {
        "id": "r9",
        "window_start": "2025-11-24T00:00:00Z",
        "window_end": "2025-12-01T00:00:00Z",
        "created_at": "2025-12-03T06:00:00Z",
        "model_version": "1.0.0",
        "verdict": "drift",
    }
    assert "r9" in monthly_summary([late], [], "2025-12")
    assert "r9" not in monthly_summary([late], [], "2025-11")


def test_every_open_item_is_listed_and_decisions_are_one_vocabulary():
    from monitoring.vocabulary import DECISIONS, Decision

    assert DECISIONS == ("accepted", "action-required", "escalated")
    flagged = {
        "id": "r5",
        "window_start": "2026-01-10T00:00:00Z",
        "window_end": "2026-01-17T00:00:00Z",
        "model_version": "1.0.0",
        "verdict": "ok",
        "data_quality": [{"text_en": "3.0 % of Body weight values out of range"}],
    }
    text = monthly_summary([*REPORTS, flagged], [], "2026-01")
    open_items = text.split("## Open items")[1]
    assert "- DRIFT: report r1" in open_items and "- WARNING: report r3" in open_items
    assert "- DATA QUALITY: report r5" in open_items
    older = [{**SIGNOFFS[1], "decision": "action_required"}]  # an old export's spelling
    assert "ACTION REQUIRED" in monthly_summary(REPORTS, older, "2026-01")
    assert Decision("action-required") is Decision.ACTION_REQUIRED
