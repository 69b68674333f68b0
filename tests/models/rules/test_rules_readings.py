"""Input contracts: readings are checked at the edge, documents export a JSON schema."""

import numpy as np
import pytest
from rules_helpers import AS_OF

from models.pathways import read_rule_set
from models.rules import (
    InvalidDocument,
    Override,
    Pathway,
    PatientReadings,
    ReadingsBatch,
    ReadingsError,
    evaluate,
    evaluate_batch,
)


def test_build_checks_questionnaires_items_and_points():
    with pytest.raises(ReadingsError, match="unknown questionnaire 'knee'"):
        PatientReadings.build(AS_OF, 50, answers={"knee": {"pain": [(AS_OF, 1)]}})
    with pytest.raises(ReadingsError, match="unknown item 'pain'"):
        PatientReadings.build(AS_OF, 50, answers={"copd-symptoms": {"pain": [(AS_OF, 1)]}})
    with pytest.raises(ReadingsError, match="0–3 points"):
        PatientReadings.build(AS_OF, 50, answers={"copd-symptoms": {"cough": [(AS_OF, 4)]}})
    with pytest.raises(ReadingsError, match="expected a number"):
        PatientReadings.build(AS_OF, 50, {"spo2": [(AS_OF, "95")]})


def test_build_sorts_by_time_and_codes_categories():
    readings = PatientReadings.build(
        AS_OF,
        50,
        {
            "spo2": [(AS_OF, 95), (AS_OF - 10, 90)],
            "on_oxygen": [(AS_OF, True)],
            "consciousness": [(AS_OF, "CVPU")],
        },
    )
    assert readings.series["spo2"] == ([AS_OF - 10, AS_OF], [90.0, 95.0])
    assert readings.series["on_oxygen"] == ([AS_OF], [1.0])
    assert readings.series["consciousness"] == ([AS_OF], [1.0])


def test_batch_from_long_refuses_unknown_signals_and_sorts():
    with pytest.raises(ReadingsError, match="unknown measurement 'spo3'"):
        ReadingsBatch.from_long([AS_OF], [50.0], {"spo3": ([0], [AS_OF], [95.0])})
    batch = ReadingsBatch.from_long(
        [AS_OF, AS_OF],
        [50.0, np.nan],
        {
            "spo2": (
                np.array([1, 0, 0]),
                np.array([AS_OF, AS_OF, AS_OF - 60]),
                np.array([91.0, 95.0, 94.0]),
            )
        },
    )
    assert batch.patient(0).series["spo2"] == ([AS_OF - 60, AS_OF], [94.0, 95.0])
    assert batch.patient(1).age_years is None


def test_documents_export_a_json_schema_for_the_api():
    schema = Pathway.model_json_schema()
    assert {"BandsRule", "ScoreRule", "CombinationRule"} <= set(schema["$defs"])
    assert set(Override.model_json_schema()["required"]) == {
        "rule",
        "reason",
        "author",
        "created_s",
        "expires_s",
    }


def test_rule_set_drafts_are_validated_before_a_dry_run():
    draft = read_rule_set("news2")
    draft["rules"][0]["bands"][1]["gt"] = 9  # gap between 8 and 9
    patient = PatientReadings.from_latest_values({"respiratory_rate": 9}, as_of_s=AS_OF)
    with pytest.raises(InvalidDocument) as info:
        evaluate(draft, patient)
    assert info.value.problems[0].path == "/rules/0/bands/1"
    with pytest.raises(InvalidDocument):
        evaluate_batch(draft, [patient])
    assert evaluate(read_rule_set("news2"), patient).scores["news2"] == 1


def test_messages_never_echo_a_fodselsnummer():
    from rules_helpers import pathway_doc

    from models.rules import validate_pathway

    fnr = "01019012345"
    with pytest.raises(ReadingsError) as info:
        PatientReadings.from_latest_values({fnr: 95})
    assert fnr not in str(info.value)
    rule = {
        "id": "x",
        "type": "bands",
        "measurement": fnr,
        "unit": "%",
        "bands": [{"lt": 88, "level": "red"}, {"ge": 88}],
    }
    problems = validate_pathway(pathway_doc([rule]))
    assert problems and all(fnr not in p.message and fnr not in p.path for p in problems)
