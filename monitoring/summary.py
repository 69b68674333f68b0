"""Monthly drift-monitoring summary in Markdown, for ``governance/monitoring/`` exports.

Input is plain dicts as the service stores them: report index rows (or full report JSON) and
sign-offs. Sign-off comments are free text written by people, so anything that looks like a
fødselsnummer or D-number (11 digits) is masked before it reaches a governance document.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from models.identifiers import redact_person_numbers

SUMMARY_DIR = Path("governance") / "monitoring"
DECISIONS = {
    "accepted": ("Accepted", "Godkjent"),
    "action_required": ("Action required", "Tiltak kreves"),
    "escalated": ("Escalated to ML engineering", "Eskalert til ML-teamet"),
}
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _cell(value: Any) -> str:
    """Table-safe text: no pipes or newlines, and no 11-digit personal identifiers."""
    text = "–" if value is None or value == "" else str(value)
    text = redact_person_numbers(text, "[id removed]")
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip()


def _report_id(report: Mapping[str, Any]) -> str:
    return str(report.get("id") or report.get("report_key"))


def _decision(value: Any) -> str:
    key = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    en, nb = DECISIONS.get(key, (str(value), str(value)))
    return f"{en} / {nb}"


def _flags(report: Mapping[str, Any]) -> str:
    flags = report.get("data_quality")
    if isinstance(flags, list):
        return (
            "; ".join(str(f.get("text_en", f)) if isinstance(f, Mapping) else str(f) for f in flags)
            or "none"
        )
    if isinstance(flags, int):
        return f"{flags} flag(s)" if flags else "none"
    return "–"


def monthly_summary(
    reports: list[dict[str, Any]], signoffs: list[dict[str, Any]], month: str
) -> str:
    """Markdown for one month (``YYYY-MM``): reports by window start, and their sign-offs.

    A report dict needs ``id`` or ``report_key``, ``window_start``, ``window_end``,
    ``model_version``, ``verdict``; ``pathway``, ``organisation``, ``drifted_features`` and
    ``data_quality`` are shown when present. A sign-off dict needs ``report_id`` (or
    ``report_key``), ``decision`` (accepted | action_required | escalated), ``signed_by``,
    ``signed_at`` and ``comment``.
    """
    if not _MONTH.match(month):
        raise ValueError(f"month must look like 2026-01, got {month!r}")
    in_month = sorted(
        (r for r in reports if str(r.get("window_start", "")).startswith(month)),
        key=lambda r: (str(r["window_start"]), str(r.get("pathway") or "")),
    )
    by_report: dict[str, list[Mapping[str, Any]]] = {}
    s: Mapping[str, Any]
    for s in signoffs:
        by_report.setdefault(str(s.get("report_id") or s.get("report_key")), []).append(s)
    counts = Counter(str(r.get("verdict")) for r in in_month)

    lines = [
        f"# Drift monitoring, {month}",
        "",
        "Generated from the drift-report index and the immutable sign-offs. The shipped model is "
        "trained on synthetic data; the verdicts compare live inputs with that model's "
        "reference sample. Review procedure: `governance/monitoring/README.md`.",
        "",
        f"Reports: {len(in_month)} — ok {counts.get('ok', 0)}, warning "
        f"{counts.get('warning', 0)}, drift {counts.get('drift', 0)}.",
        "",
        "## Reports",
        "",
    ]
    if not in_month:
        lines += ["No drift reports with a window starting in this month.", ""]
    else:
        lines += [
            "| window | pathway | organisation | model | verdict | drifted features | "
            "data quality | sign-off |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in in_month:
            signed = by_report.get(_report_id(r), [])
            status = (
                ", ".join(_decision(s.get("decision")) for s in signed) or "**awaiting review**"
            )
            lines.append(
                "| "
                + " | ".join(
                    _cell(v)
                    for v in (
                        f"{r['window_start']} – {r['window_end']}",
                        r.get("pathway") or "all",
                        r.get("organisation") or "all",
                        r.get("model_version"),
                        str(r.get("verdict")).upper(),
                        ", ".join(r.get("drifted_features") or []) or "none",
                        _flags(r),
                        status,
                    )
                )
                + " |"
            )
        lines.append("")

    ids = {_report_id(r) for r in in_month}
    lines += ["## Sign-offs", ""]
    relevant = sorted(
        (s for rid, items in by_report.items() if rid in ids for s in items),
        key=lambda s: str(s.get("signed_at")),
    )
    if not relevant:
        lines += ["No sign-offs for these reports.", ""]
    else:
        lines += [
            "| report | decision | signed by | signed at | comment |",
            "|---|---|---|---|---|",
        ]
        for s in relevant:
            lines.append(
                "| "
                + " | ".join(
                    _cell(v)
                    for v in (
                        str(s.get("report_id") or s.get("report_key"))[:12],
                        _decision(s.get("decision")),
                        s.get("signed_by"),
                        s.get("signed_at"),
                        s.get("comment"),
                    )
                )
                + " |"
            )
        lines.append("")

    open_items = [
        r
        for r in in_month
        if r.get("verdict") in ("drift", "warning") and not by_report.get(_report_id(r))
    ]
    lines += ["## Open items", ""]
    if open_items:
        lines += [
            f"- {_cell(r['window_start'])} {_cell(r.get('pathway') or 'all')}: "
            f"{_cell(str(r.get('verdict')).upper())}, not signed off"
            for r in open_items
        ]
    else:
        lines.append("None: every warning or drift verdict of the month has a sign-off.")
    lines.append("")
    return "\n".join(lines)


def write_monthly_summary(
    reports: Iterable[dict[str, Any]],
    signoffs: Iterable[dict[str, Any]],
    month: str,
    folder: Path = SUMMARY_DIR,
) -> Path:
    """Write ``drift-summary-YYYY-MM.md`` into ``folder`` and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"drift-summary-{month}.md"
    path.write_text(monthly_summary(list(reports), list(signoffs), month), encoding="utf-8")
    return path
