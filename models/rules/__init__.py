"""Pathway rule engine: clinician-configured rules, NEWS2 as data, triage with the model.

Pathways and rule sets are JSON documents (:mod:`models.rules.schema`), shipped in
``models/pathways/`` and edited by clinicians through the service; the language is described
for clinicians and compliance in ``governance/rule-language.md``. This package is pure
Python/numpy: no HTTP, no database. The service calls:

- ``load_shipped_pathways() -> dict[str, Pathway]``, ``load_pathway(id)``, ``load_rule_set(id)``
- ``evaluate(doc, readings, model_probability=None, overrides=()) -> Evaluation``: one patient;
  ``doc`` is a Pathway, a RuleSet (dry run of ``news2``) or a draft dict (validated first,
  :class:`InvalidDocument` lists the problems). ``model_probability=None``: rules only.
- ``evaluate_batch(doc, batch, probabilities=None, overrides=None) -> BatchEvaluation``:
  vectorised; ``.level``/``.scores`` at once, ``.evaluation(i)`` equals ``evaluate`` on patient i.
- ``validate_pathway(draft) -> list[Problem]`` (empty: safe to publish), ``validate_override``
- ``pathway_hash(doc)``, ``canonical_json(doc)``, ``canonical_dict(doc)``,
  ``diff_pathways(old, new) -> list[Change]`` for the version history
- ``describe_pathway(doc, options=None)``: every effective rule in plain bokmål and English
- ``PatientReadings.from_latest_values({...}, age_years=...)`` for a dry run;
  ``PatientReadings(as_of_s, age_years, series, options, enrolled_s)`` from stored history.

A clinician raises one COPD patient's SpO2 limits (habitual SpO2 88 %)::

    copd = load_pathway("copd")
    mine = {"rule": "spo2-low", "reason": "Habituell SpO2 88 % ved stabil KOLS",
            "author": "lege Kari Nordmann", "created_s": 1779400000, "expires_s": 1787000000,
            "bands": [{"lt": 85, "level": "red"}, {"ge": 85, "lt": 87, "level": "yellow"},
                      {"ge": 87}]}
    assert validate_override(copd, mine) == []
    patient = PatientReadings.from_latest_values(
        {"spo2": 84}, age_years=71, as_of_s=1780000000, options={"hypercapnic_failure": True})
    result = evaluate(copd, patient, model_probability=0.12, overrides=[mine])
    result.level                # "red"
    result.fired[0].text_nb     # "SpO2 < 85 % (målt 84 %); personlig grense satt av lege
                                #  Kari Nordmann den 21.05.2026: Habituell SpO2 88 % ved …"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.rules.batch import BatchEvaluation, run_batch
from models.rules.describe import describe_pathway, describe_rule
from models.rules.engine import Evaluation, FiredRule, check_probability, program_for, run_single
from models.rules.library import load_pathway, load_rule_set, load_shipped_pathways
from models.rules.readings import PatientReadings, ReadingsBatch, ReadingsError
from models.rules.schema import RULE_TYPES, Override, Pathway, RuleSet
from models.rules.store import (
    Change,
    canonical_dict,
    canonical_json,
    changes_needing_approval,
    diff_pathways,
    parse_document,
    pathway_hash,
)
from models.rules.validate import Problem, validate_override, validate_pathway, validate_rule_set

__all__ = [
    "RULE_TYPES",
    "BatchEvaluation",
    "Change",
    "Evaluation",
    "FiredRule",
    "InvalidDocument",
    "Override",
    "Pathway",
    "PatientReadings",
    "Problem",
    "ReadingsBatch",
    "ReadingsError",
    "RuleSet",
    "as_document",
    "canonical_dict",
    "canonical_json",
    "changes_needing_approval",
    "describe_pathway",
    "describe_rule",
    "diff_pathways",
    "evaluate",
    "evaluate_batch",
    "load_pathway",
    "load_rule_set",
    "load_shipped_pathways",
    "pathway_hash",
    "validate_override",
    "validate_pathway",
    "validate_rule_set",
]


class InvalidDocument(ValueError):
    """A draft that failed validation; ``problems`` lists each with its location."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems[:5]))


def as_document(doc: Pathway | RuleSet | Mapping[str, Any]) -> Pathway | RuleSet:
    """A runnable document; a draft dict is validated first (InvalidDocument if it fails)."""
    if isinstance(doc, Pathway | RuleSet):
        return doc
    is_pathway = "editors" in doc or "measurements" in doc
    problems = validate_pathway(doc) if is_pathway else validate_rule_set(doc)
    if problems:
        raise InvalidDocument(problems)
    return parse_document(doc)


def _overrides(items: Sequence[Override | Mapping[str, Any]]) -> list[Override]:
    return [o if isinstance(o, Override) else Override.model_validate(dict(o)) for o in items]


def evaluate(
    doc: Pathway | RuleSet | Mapping[str, Any],
    readings: PatientReadings,
    model_probability: float | None = None,
    overrides: Sequence[Override | Mapping[str, Any]] = (),
) -> Evaluation:
    """Evaluate one patient: rules, scores, fired texts and the combined triage level.

    ``model_probability`` None evaluates rules only (dry runs); otherwise the pathway's triage
    policy combines it with the rules. ``overrides`` are the patient's personal thresholds;
    those not active at ``readings.as_of_s`` are ignored and listed as such.
    """
    document = as_document(doc)
    items = _overrides(overrides)
    active = tuple(o for o in items if o.active(readings.as_of_s))
    ignored = tuple(o for o in items if not o.active(readings.as_of_s))
    program = program_for(document, readings.options, active)
    return run_single(program, readings, check_probability(model_probability), ignored)


def evaluate_batch(
    doc: Pathway | RuleSet | Mapping[str, Any],
    batch: ReadingsBatch | Sequence[PatientReadings],
    probabilities: Sequence[float | None] | np.ndarray | None = None,
    overrides: Mapping[int, Sequence[Override | Mapping[str, Any]]] | None = None,
) -> BatchEvaluation:
    """Evaluate many patients vectorised; ``overrides`` maps patient index to its overrides.

    ``result.level`` / ``result.scores`` are ready at once; ``result.evaluation(i)`` gives
    patient ``i``'s full Evaluation, identical to :func:`evaluate` on that patient.
    """
    document = as_document(doc)
    if not isinstance(batch, ReadingsBatch):
        batch = ReadingsBatch.from_patients(list(batch))
    parsed = {i: _overrides(v) for i, v in (overrides or {}).items()}
    return run_batch(document, batch, probabilities, parsed)
