"""Pathway questionnaires: real FHIR R4 resources, scored by their itemWeight extensions."""

import json
import math

import pytest

from models.questionnaires import (
    CANONICAL_BASE,
    ITEM_WEIGHT_URL,
    PATHWAY_QUESTIONNAIRE,
    QUESTIONNAIRE_DIR,
    QUESTIONNAIRE_IDS,
    answers_from_response,
    load_questionnaire,
    questionnaire_by_url,
    score_answers,
    scored_items,
)
from tests.fhir_r4 import validate_r4

EXPECTED_SCORED = {
    "copd-symptoms": ["dyspnoea", "cough", "sputum_colour", "sputum_volume"],
    "heart-failure-symptoms": ["dyspnoea", "orthopnoea", "ankle_swelling", "fatigue"],
    "post-operative-symptoms": ["wound_pain", "wound_redness", "nausea", "feeling_feverish"],
    "oncology-symptoms": ["fever_chills", "mouth_sores", "diarrhoea", "fatigue"],
    "paediatric-symptoms": ["breathing_effort", "eating_drinking", "activity", "cough"],
}


def test_every_pathway_has_its_questionnaire_file():
    assert set(PATHWAY_QUESTIONNAIRE.values()) == set(EXPECTED_SCORED) == set(QUESTIONNAIRE_IDS)
    assert {p.stem for p in QUESTIONNAIRE_DIR.glob("*.json")} == set(EXPECTED_SCORED)


@pytest.mark.parametrize("qid", sorted(EXPECTED_SCORED))
def test_questionnaire_is_valid_fhir_with_weights_0_to_3(qid):
    q = load_questionnaire(qid)
    validate_r4(q)  # raises on an invalid resource
    assert q["resourceType"] == "Questionnaire" and q["id"] == qid
    assert q["url"] == f"{CANONICAL_BASE}{qid}" and q["status"] == "active" and q["version"]
    weights = scored_items(q)
    assert list(weights) == EXPECTED_SCORED[qid]
    for link, options in weights.items():
        assert sorted(options.values()) == [0, 1, 2, 3], link
    for item in q["item"]:
        assert item["text"] and item["linkId"]
        for opt in item.get("answerOption", []):
            exts = opt["valueCoding"].get("extension", [])
            assert all(e["url"] == ITEM_WEIGHT_URL for e in exts)
    link_ids = {i["linkId"] for i in q["item"]}
    assert "consciousness" in link_ids
    by_id = {i["linkId"]: i for i in q["item"]}
    assert [o["valueCoding"]["code"] for o in by_id["consciousness"]["answerOption"]] == [
        "alert",
        "cvpu",
    ]
    if "on_oxygen" in by_id:
        assert by_id["on_oxygen"]["type"] == "boolean"


def test_questionnaire_text_is_norwegian():
    q = load_questionnaire("copd-symptoms")
    assert q["language"] == "nb-NO"
    assert "pust" in q["item"][0]["text"]


def test_load_returns_a_copy():
    q = load_questionnaire("copd-symptoms")
    q["item"].clear()
    assert load_questionnaire("copd-symptoms")["item"]


def test_unknown_questionnaire_id():
    with pytest.raises(KeyError, match="unknown questionnaire 'nope'"):
        load_questionnaire("nope")


def test_questionnaire_by_url_with_and_without_version():
    url = f"{CANONICAL_BASE}heart-failure-symptoms"
    assert questionnaire_by_url(url)["id"] == "heart-failure-symptoms"
    assert questionnaire_by_url(url + "|1.0.0")["id"] == "heart-failure-symptoms"
    assert questionnaire_by_url(url + "|9.9.9") is None
    assert questionnaire_by_url(f"{CANONICAL_BASE}unknown") is None
    assert questionnaire_by_url("https://elsewhere.example/Questionnaire/copd-symptoms") is None


def test_score_is_ten_times_points_over_max_answered():
    q = load_questionnaire("copd-symptoms")
    score = score_answers(
        q,
        {
            "dyspnoea": "severe",
            "cough": "mild",
            "sputum_colour": "clear",
            "sputum_volume": "more",
            "on_oxygen": True,
            "consciousness": "cvpu",
        },
    )
    assert score.item_points == {"dyspnoea": 3, "cough": 1, "sputum_colour": 0, "sputum_volume": 2}
    assert score.symptom_score == pytest.approx(10 * 6 / 12)
    assert score.values == {"on_oxygen": True, "consciousness": "cvpu"}


def test_partial_answers_are_normalised_over_answered_items():
    q = load_questionnaire("paediatric-symptoms")
    score = score_answers(q, {"breathing_effort": "laboured"})
    assert score.symptom_score == pytest.approx(10 * 2 / 3)
    only_oxygen = score_answers(q, {"on_oxygen": False})
    assert math.isnan(only_oxygen.symptom_score) and only_oxygen.values == {"on_oxygen": False}


def test_codings_and_response_answers_are_accepted():
    q = load_questionnaire("oncology-symptoms")
    coding = {"system": "x", "code": "rigors"}
    assert score_answers(q, {"fever_chills": coding}).item_points == {"fever_chills": 3}
    assert score_answers(q, {"fever_chills": {"valueCoding": coding}}).symptom_score == 10


def test_unknown_link_id_is_named():
    q = load_questionnaire("oncology-symptoms")
    with pytest.raises(ValueError, match="'wound_pain'"):
        score_answers(q, {"wound_pain": "none"})


def test_answer_code_outside_options_is_named():
    q = load_questionnaire("heart-failure-symptoms")
    with pytest.raises(ValueError, match=r"'terrible'.*'fatigue'"):
        score_answers(q, {"fatigue": "terrible"})
    with pytest.raises(ValueError, match="'on_oxygen'"):
        score_answers(q, {"on_oxygen": "yes"})
    with pytest.raises(ValueError, match="'consciousness'"):
        score_answers(q, {"consciousness": "drowsy"})


def test_answers_from_a_questionnaire_response():
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{CANONICAL_BASE}copd-symptoms|1.0.0",
        "status": "completed",
        "subject": {"reference": "Patient/1"},
        "authored": "2026-01-05T08:00:00+00:00",
        "item": [
            {"linkId": "dyspnoea", "answer": [{"valueCoding": {"code": "moderate"}}]},
            {"linkId": "on_oxygen", "answer": [{"valueBoolean": False}]},
        ],
    }
    validate_r4(json.loads(json.dumps(response)))
    answers = answers_from_response(response)
    assert answers == {"dyspnoea": "moderate", "on_oxygen": False}
    score = score_answers(questionnaire_by_url(response["questionnaire"]), answers)
    assert score.symptom_score == pytest.approx(10 * 2 / 3)
