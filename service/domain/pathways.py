"""Pathway policy seam: which measurements a pathway collects, and the triage decision.

The clinician-configured rule engine (models.rules) plugs in here; until a pathway has rules,
the triage level follows the model probability alone with the pathway's thresholds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sqlalchemy.orm import Session

from service.db.tables import Patient

LEVELS = ("red", "yellow", "green")


@dataclass
class PatientReadings:
    """A patient's recent readings by canonical name, as of a reference time."""

    series: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (times_s, values), time-sorted
    as_of_s: int
    age_years: float

    @classmethod
    def from_rows(cls, rows: list[Any], as_of_s: int, age_years: float) -> PatientReadings:
        times: dict[str, list[int]] = defaultdict(list)
        values: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            times[r.name].append(r.effective_s)
            values[r.name].append(r.value)
        return cls({k: (np.asarray(times[k], dtype=np.int64), np.asarray(values[k]))
                    for k in times}, as_of_s, age_years)


@dataclass
class TriageDecision:
    level: str
    level_rank: int  # 0 = most urgent
    pathway_version: int
    rule_set_hash: str
    channels: set[str]
    fired: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    level_order: list[str] = field(default_factory=lambda: list(LEVELS))


class PathwayPolicy(Protocol):
    def known(self) -> set[str]: ...

    def evaluate(self, session: Session, patient: Patient, readings: PatientReadings,
                 probability: float | None) -> TriageDecision: ...


# Interim thresholds on the model probability, used until a pathway's rules are configured.
MODEL_ONLY_THRESHOLDS = {"red": 0.5, "yellow": 0.2}
PATHWAY_CHANNELS: dict[str, set[str]] = {
    "copd": {"spo2", "heart_rate", "respiratory_rate", "temperature", "symptom_score"},
    "heart-failure": {"weight", "heart_rate", "systolic_bp", "spo2", "symptom_score"},
    "post-operative": {"temperature", "heart_rate", "systolic_bp", "respiratory_rate",
                       "symptom_score"},
    "oncology": {"temperature", "heart_rate", "systolic_bp", "spo2", "symptom_score"},
    "paediatric": {"spo2", "heart_rate", "respiratory_rate", "temperature", "symptom_score"},
}


class ModelOnlyPolicy:
    """Triage on the model probability alone (no configured rules)."""

    def known(self) -> set[str]:
        return set(PATHWAY_CHANNELS)

    def evaluate(self, session: Session, patient: Patient, readings: PatientReadings,
                 probability: float | None) -> TriageDecision:
        p = probability or 0.0
        level = ("red" if p >= MODEL_ONLY_THRESHOLDS["red"]
                 else "yellow" if p >= MODEL_ONLY_THRESHOLDS["yellow"] else "green")
        return TriageDecision(level, LEVELS.index(level), 0, "model-only",
                              PATHWAY_CHANNELS.get(patient.pathway_id, set()))
