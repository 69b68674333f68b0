"""Named operating points: how a pathway turns the model's probability into a level.

The model's probability is not a level by itself. Training chooses, per pathway, the threshold
that meets each named point on validation data (training/operating_points.py) and stores it in
the artifact's manifest under ``operating_points``. A pathway's ``triage.model_thresholds`` names
a point per level (``{"red": "budget-2", "yellow": "sensitivity-80"}``); the service resolves the
names against the model it has loaded, so a model reload re-resolves them. A bare probability
(``0.3``) is still accepted, for a pathway that must pin one.

Combining policy (written once, here and in governance/rule-language.md): rules are the hard
safety limits (a red rule such as NEWS2 ≥ 7 or SpO2 < 85 % is red whatever the model says); the
model gives the early warning and can raise a level, never lower one. Every decision says
whether its level came from the rules, the model, or both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

OPERATING_POINT_NAME = re.compile(r"^(budget|sensitivity)-[0-9]{1,3}$")


@dataclass(frozen=True)
class OperatingPointSpec:
    name: str
    kind: Literal["alert_budget", "event_sensitivity"]
    target: float  # new alerts per 100 patient-days, or a share of events
    description: str


def _budget(per_100: int) -> OperatingPointSpec:
    return OperatingPointSpec(
        f"budget-{per_100}",
        "alert_budget",
        float(per_100),
        f"at most {per_100} new alert(s) per 100 patient-days",
    )


def _sensitivity(percent: int) -> OperatingPointSpec:
    return OperatingPointSpec(
        f"sensitivity-{percent}",
        "event_sensitivity",
        percent / 100.0,
        f"finds {percent} % of deteriorations within 72 h before onset",
    )


OPERATING_POINT_SPECS: tuple[OperatingPointSpec, ...] = (
    _budget(1),
    _budget(2),
    _budget(3),
    _budget(5),
    _sensitivity(50),
    _sensitivity(60),
    _sensitivity(80),
)
SPEC_BY_NAME = {s.name: s for s in OPERATING_POINT_SPECS}


class UnresolvedOperatingPoint(LookupError):
    """A pathway names an operating point that the loaded model does not carry."""

    def __init__(self, pathway: str, level: str, name: str, model_version: str) -> None:
        self.pathway, self.level, self.name = pathway, level, name
        super().__init__(
            f"pathway '{pathway}' uses operating point '{name}' for level '{level}', but model "
            f"version {model_version} has no such point for that pathway"
        )


def pathway_points(manifest_extra: Mapping[str, Any], pathway: str) -> dict[str, Any]:
    """The operating points a manifest carries for one pathway ({} if none)."""
    block = manifest_extra.get("operating_points") or {}
    entry = (block.get("pathways") or {}).get(pathway) or {}
    points = entry.get("points") or {}
    return dict(points)


def resolve_thresholds(
    pathway: str,
    model_thresholds: Mapping[str, float | str],
    points: Mapping[str, Any],
    model_version: str,
) -> dict[str, float]:
    """Level -> probability, names replaced by the loaded model's thresholds for the pathway."""
    out: dict[str, float] = {}
    for level, value in model_thresholds.items():
        if isinstance(value, str):
            point = points.get(value)
            if point is None:
                raise UnresolvedOperatingPoint(pathway, level, value, model_version)
            out[level] = float(point["threshold"])
        else:
            out[level] = float(value)
    return out


def expected_figures(
    model_thresholds: Mapping[str, float | str], points: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per level: what the chosen point is expected to give (validation figures with CIs)."""
    out: dict[str, dict[str, Any]] = {}
    for level, value in model_thresholds.items():
        if isinstance(value, str) and value in points:
            point = points[value]
            v = point.get("validation", {})
            out[level] = {
                "operating_point": value,
                "description": point.get("description"),
                "threshold": point.get("threshold"),
                "alerts_per_100_patient_days": v.get("alerts_per_100_patient_days"),
                "alerts_per_100_patient_days_ci": v.get("alerts_per_100_patient_days_ci"),
                "event_sensitivity": v.get("event_sensitivity"),
                "event_sensitivity_ci": v.get("event_sensitivity_ci"),
                "ppv": v.get("ppv"),
                "ppv_ci": v.get("ppv_ci"),
            }
        else:
            out[level] = {"operating_point": None, "threshold": value}
    return out


@dataclass(frozen=True)
class ModelPoints:
    """The operating points of one loaded model version (from its manifest)."""

    model_version: str
    block: Mapping[str, Any]
    load_key: str = ""  # distinguishes two loads of the same version (a rewritten manifest)

    @classmethod
    def of(
        cls, model_version: str, manifest_extra: Mapping[str, Any], load_key: str = ""
    ) -> ModelPoints:
        return cls(model_version, manifest_extra.get("operating_points") or {}, load_key)

    def for_pathway(self, pathway: str) -> dict[str, Any]:
        return pathway_points({"operating_points": self.block}, pathway)

    def resolve(
        self, pathway: str, model_thresholds: Mapping[str, float | str]
    ) -> tuple[dict[str, float | str], list[str]]:
        """Names replaced by thresholds where this model carries them; the names it lacks."""
        points = self.for_pathway(pathway)
        out: dict[str, float | str] = {}
        missing: list[str] = []
        for level, value in model_thresholds.items():
            if isinstance(value, str):
                point = points.get(value)
                if point is None:
                    missing.append(f"{level}: {value}")
                    out[level] = value  # left as a name: the engine cannot raise this level
                else:
                    out[level] = float(point["threshold"])
            else:
                out[level] = float(value)
        return out, missing
