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
from monitoring.vocabulary import DECISION_LABELS, OPEN_VERDICTS, Decision

SUMMARY_DIR = Path("governance") / "monitoring"
DECISIONS = DECISION_LABELS
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _cell(value: Any) -> str:
    """Table-safe text: no pipes or newlines, and no 11-digit personal identifiers."""
    text = "–" if value is None or value == "" else str(value)
    text = redact_person_numbers(text, "[id removed]")
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip()


def _report_id(report: Mapping[str, Any]) -> str:
    return str(report.get("id") or report.get("report_key"))


def _decision(value: Any) -> str:
    # Older exports wrote action_required; the vocabulary is monitoring.vocabulary's.
    key = str(value).strip().lower().replace(" ", "-").replace("_", "-")
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
    """Markdown for one month (``YYYY-MM``): the reports made that month, and their sign-offs.

    A report belongs to the month it was made (``created_at``; ``window_start`` for rows that
    lack it), so a report made on 3 December about late November is December's. A report dict
    needs ``id`` or ``report_key``, ``window_start``, ``window_end``, ``model_version``,
    ``verdict``; ``created_at``, ``pathway``, ``organisation``, ``drifted_features`` and
    ``data_quality`` are shown when present. A sign-off dict needs ``report_id`` (or
    ``report_key``), ``decision`` (one of monitoring.vocabulary.DECISIONS), ``signed_by``,
    ``signed_at`` and ``comment``.
    """
    if not _MONTH.match(month):
        raise ValueError(f"month must look like 2026-01, got {month!r}")
    in_month = sorted(
        (r for r in reports if _made(r).startswith(month)),
        key=lambda r: (_made(r), str(r["window_start"]), str(r.get("pathway") or "")),
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
        lines += ["No drift reports were made in this month.", ""]
    else:
        lines += [
            "| made | window | pathway | organisation | model | verdict | drifted features | "
            "data quality | sign-off |",
            "|---|---|---|---|---|---|---|---|---|",
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
                        _made(r)[:10],
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

    lines += ["## Open items", ""]
    open_items = _open_items(in_month, by_report)
    if open_items:
        lines += [f"- {_cell(text)}" for text in open_items]
    else:
        lines.append(
            "None: every warning, drift and data-quality flag of the month is signed off, and no "
            "sign-off asks for an action still to be taken."
        )
    lines.append("")
    return "\n".join(lines)


def _made(report: Mapping[str, Any]) -> str:
    return str(report.get("created_at") or report.get("window_start") or "")


def _open_items(
    reports: list[dict[str, Any]], by_report: Mapping[str, list[Mapping[str, Any]]]
) -> list[str]:
    """Every open item: unsigned warnings, drifts and data-quality flags, and action-required
    sign-offs (the action is someone's open task until a later report closes it)."""
    items = []
    for r in reports:
        scope = (
            f"{r.get('pathway') or 'all pathways'}, {r.get('organisation') or 'all organisations'}"
        )
        what = f"report {_report_id(r)[:12]} made {_made(r)[:10]} ({scope}; window {r['window_start']} – {r['window_end']})"
        signed = by_report.get(_report_id(r), [])
        verdict = str(r.get("verdict"))
        if not signed and verdict in OPEN_VERDICTS:
            items.append(f"{verdict.upper()}: {what}, not signed off")
        elif not signed and r.get("data_quality"):
            items.append(f"DATA QUALITY: {what}: {_flags(r)}, not signed off")
        for s in signed:
            if str(s.get("decision")).replace("_", "-") == Decision.ACTION_REQUIRED:
                items.append(
                    f"ACTION REQUIRED: {what}, signed off by {s.get('signed_by')} on "
                    f"{str(s.get('signed_at'))[:10]}: {s.get('comment')}"
                )
    return items


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
