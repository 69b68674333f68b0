"""Pathway symptom questionnaires (FHIR R4 ``Questionnaire``) and their scoring.

One questionnaire per pathway, as the Helsenorge form builder makes them: choice items whose
answer options carry the SDC ``itemWeight`` extension (0–3 points), plus unscored items that the
NEWS2 rules need (``on_oxygen``, ``consciousness``). The total is normalised to 0–10 points so
the model sees one ``symptom_score`` whatever the pathway.

On the serving path: standard library only.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from models.measurements import CONSCIOUSNESS, ON_OXYGEN, consciousness_category

ITEM_WEIGHT_URL = "http://hl7.org/fhir/StructureDefinition/itemWeight"
# The older SDC name of the same extension; forms built before itemWeight existed use it.
ORDINAL_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
CANONICAL_BASE = "https://triage.example.org/fhir/Questionnaire/"
QUESTIONNAIRE_DIR = Path(__file__).parent / "questionnaires"
SYMPTOM_SCORE_MAX = 10.0

# Which questionnaire each shipped pathway sends to its patients.
PATHWAY_QUESTIONNAIRE: dict[str, str] = {
    "copd": "copd-symptoms",
    "heart-failure": "heart-failure-symptoms",
    "post-operative": "post-operative-symptoms",
    "oncology": "oncology-symptoms",
    "paediatric": "paediatric-symptoms",
}
QUESTIONNAIRE_IDS: tuple[str, ...] = tuple(PATHWAY_QUESTIONNAIRE.values())
CONSCIOUSNESS_CODES = ("alert", "cvpu")


@dataclass
class QuestionnaireScore:
    """A scored answer set.

    ``symptom_score`` is NaN when no scored item was answered (an answer set with only
    ``on_oxygen`` is valid but carries no symptom score).
    """

    symptom_score: float
    item_points: dict[str, int] = field(default_factory=dict)
    values: dict[str, object] = field(default_factory=dict)


@cache
def _read(questionnaire_id: str) -> dict[str, Any]:
    if questionnaire_id not in QUESTIONNAIRE_IDS:
        raise KeyError(
            f"unknown questionnaire '{questionnaire_id}'; known: {', '.join(QUESTIONNAIRE_IDS)}"
        )
    path = QUESTIONNAIRE_DIR / f"{questionnaire_id}.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def load_questionnaire(questionnaire_id: str) -> dict[str, Any]:
    """The Questionnaire resource with this id (a copy: callers may change it)."""
    return copy.deepcopy(_read(questionnaire_id))


def questionnaire_by_url(url: str) -> dict[str, Any] | None:
    """The Questionnaire for a canonical url, optionally ``url|version``; None if unknown."""
    base, _, version = url.partition("|")
    if not base.startswith(CANONICAL_BASE):
        return None
    questionnaire_id = base[len(CANONICAL_BASE) :]
    if questionnaire_id not in QUESTIONNAIRE_IDS:
        return None
    questionnaire = load_questionnaire(questionnaire_id)
    if version and questionnaire.get("version") != version:
        return None
    return questionnaire


def _weight(option: dict[str, Any]) -> int | None:
    """itemWeight of an answer option (on the option or on its coding, both are used)."""
    for holder in (option, option.get("valueCoding", {})):
        for ext in holder.get("extension", []):
            if ext.get("url") in (ITEM_WEIGHT_URL, ORDINAL_VALUE_URL):
                return int(ext.get("valueDecimal", ext.get("valueInteger", 0)))
    return None


def scored_items(questionnaire: dict[str, Any]) -> dict[str, dict[str, int]]:
    """linkId -> {answer code -> points} for every item whose options carry weights."""
    scored: dict[str, dict[str, int]] = {}
    for item in questionnaire.get("item", []):
        weights = {
            opt["valueCoding"]["code"]: w
            for opt in item.get("answerOption", [])
            if "valueCoding" in opt and (w := _weight(opt)) is not None
        }
        if weights:
            scored[item["linkId"]] = weights
    return scored


def _answer_code(link_id: str, answer: object) -> str:
    """An answer given as a code, a Coding dict or a QuestionnaireResponse answer dict."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, dict):
        coding = answer.get("valueCoding", answer)
        code = coding.get("code") if isinstance(coding, dict) else None
        if isinstance(code, str):
            return code
    raise ValueError(f"answer to '{link_id}' must be a code, got {type(answer).__name__}")


def score_answers(questionnaire: dict[str, Any], answers: dict[str, object]) -> QuestionnaireScore:
    """Points per scored item, the 0–10 symptom score and the unscored values NEWS2 uses."""
    items = {item["linkId"]: item for item in questionnaire.get("item", [])}
    weights = scored_items(questionnaire)
    points: dict[str, int] = {}
    values: dict[str, object] = {}
    for link_id, answer in answers.items():
        item = items.get(link_id)
        if item is None:
            raise ValueError(
                f"linkId '{link_id}' is not an item of questionnaire {questionnaire.get('id')}"
            )
        if item["type"] == "boolean":
            if isinstance(answer, dict) and "valueBoolean" in answer:
                answer = answer["valueBoolean"]
            if not isinstance(answer, bool):
                raise ValueError(f"answer to '{link_id}' must be true or false")
            values[link_id] = answer
            continue
        code = _answer_code(link_id, answer)
        if link_id == CONSCIOUSNESS and isinstance(code, str):
            # alert, confusion, voice, pain, unresponsive; anything else is refused below
            with contextlib.suppress(ValueError):
                code = consciousness_category(code)
        options = [
            o["valueCoding"]["code"] for o in item.get("answerOption", []) if "valueCoding" in o
        ]
        if code not in options:
            raise ValueError(
                f"answer '{code}' to '{link_id}' is not one of its options: {', '.join(options)}"
            )
        if link_id in weights:
            points[link_id] = weights[link_id][code]
        else:
            values[link_id] = code
    answered_max = sum(max(weights[k].values()) for k in points)
    symptom_score = (
        SYMPTOM_SCORE_MAX * sum(points.values()) / answered_max if answered_max else math.nan
    )
    return QuestionnaireScore(symptom_score=symptom_score, item_points=points, values=values)


def answers_from_response(response: dict[str, Any]) -> dict[str, object]:
    """linkId -> code (choice) or bool (boolean) from a QuestionnaireResponse, nested items too."""
    answers: dict[str, object] = {}

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            for answer in item.get("answer", []):
                if "valueBoolean" in answer:
                    answers[item["linkId"]] = bool(answer["valueBoolean"])
                elif "valueCoding" in answer:
                    answers[item["linkId"]] = answer["valueCoding"].get("code")
                elif "valueString" in answer:
                    answers[item["linkId"]] = answer["valueString"]
                walk(answer.get("item", []))
            walk(item.get("item", []))

    walk(response.get("item", []))
    return answers


__all__ = [
    "CONSCIOUSNESS",
    "CONSCIOUSNESS_CODES",
    "ON_OXYGEN",
    "PATHWAY_QUESTIONNAIRE",
    "QUESTIONNAIRE_IDS",
    "QuestionnaireScore",
    "answers_from_response",
    "load_questionnaire",
    "questionnaire_by_url",
    "score_answers",
    "scored_items",
]
