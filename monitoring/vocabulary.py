"""The one vocabulary of drift-report decisions, for the docs, the API, the CLI and the web pages."""

from __future__ import annotations

from enum import StrEnum


class Decision(StrEnum):
    """A compliance officer's decision on a drift report (a sign-off)."""

    ACCEPTED = "accepted"  # read, explained, no action
    ACTION_REQUIRED = "action-required"  # an owner and a date in the comment
    ESCALATED = "escalated"  # to ML engineering


DECISIONS: tuple[str, ...] = tuple(d.value for d in Decision)
DECISION_LABELS: dict[str, tuple[str, str]] = {
    Decision.ACCEPTED: ("Accepted", "Godkjent"),
    Decision.ACTION_REQUIRED: ("Action required", "Tiltak kreves"),
    Decision.ESCALATED: ("Escalated to ML engineering", "Eskalert til ML-teamet"),
}
# Verdicts that leave an open item until someone signs the report off.
OPEN_VERDICTS = ("warning", "drift")
