"""Safety of edits: each kind of bad draft is rejected with a located message."""

import copy

import pytest
from rules_helpers import pathway_doc

from models.pathways import read_pathway, shipped_pathway_ids
from models.rules import Problem, load_pathway, validate_override, validate_pathway
from models.rules.validate import validate_rule_set

SPO2_BANDS = {
    "id": "spo2-low",
    "type": "bands",
    "measurement": "spo2",
    "unit": "%",
    "direction": "low",
    "bands": [{"lt": 88, "level": "red"}, {"ge": 88, "lt": 92, "level": "yellow"}, {"ge": 92}],
}


def _draft(**changes):
    rule = copy.deepcopy(SPO2_BANDS)
    rule.update(changes)
    return pathway_doc([rule])


def _paths(problems):
    return {p.path for p in problems}


def _one(problems, path):
    matching = [p for p in problems if p.path == path]
    assert matching, f"no problem at {path}: {problems}"
    return matching[0].message


@pytest.mark.parametrize(
    "pathway_id", ["copd", "heart-failure", "post-operative", "oncology", "paediatric"]
)
def test_shipped_pathways_are_valid(pathway_id):
    assert pathway_id in shipped_pathway_ids()
    assert validate_pathway(read_pathway(pathway_id)) == []


def test_valid_draft_has_no_problems():
    assert validate_pathway(_draft()) == []


def test_not_an_object():
    assert validate_pathway(["copd"]) == [Problem("", "a pathway is a JSON object")]


def test_malformed_structure_unknown_field_and_missing_field():
    draft = _draft()
    draft["rules"][0]["treshold"] = 3  # typo: refused, never silently ignored
    del draft["editors"]
    problems = validate_pathway(draft)
    assert "/rules/0/treshold" in _paths(problems)
    assert "/editors" in _paths(problems)


def test_malformed_rule_type():
    draft = _draft(type="magic")
    problems = validate_pathway(draft)
    assert _paths(problems) == {"/rules/0"}


def test_both_edges_on_one_side():
    problems = validate_pathway(_draft(bands=[{"lt": 88, "le": 88, "level": "red"}, {"ge": 88}]))
    assert "/rules/0/bands/0" in _paths(problems)


def test_overlapping_bands():
    draft = _draft(
        bands=[{"le": 88, "level": "red"}, {"ge": 88, "lt": 92, "level": "yellow"}, {"ge": 92}]
    )
    message = _one(validate_pathway(draft), "/rules/0/bands/1")
    assert message.startswith("overlap")


def test_gapped_bands():
    draft = _draft(
        bands=[{"lt": 88, "level": "red"}, {"ge": 89, "lt": 92, "level": "yellow"}, {"ge": 92}]
    )
    message = _one(validate_pathway(draft), "/rules/0/bands/1")
    assert message.startswith("gap")


def test_open_ends_must_cover_all_values():
    draft = _draft(bands=[{"ge": 50, "lt": 88, "level": "red"}, {"ge": 88}])
    assert _one(validate_pathway(draft), "/rules/0/bands/0").startswith("gap: values < 50")


def test_both_exclusive_edges_leave_a_gap_at_the_edge():
    draft = _draft(bands=[{"lt": 88, "level": "red"}, {"gt": 88}])
    assert _one(validate_pathway(draft), "/rules/0/bands/1").startswith("gap")


def test_unknown_measurement():
    problems = validate_pathway(_draft(measurement="spo3"))
    assert _one(problems, "/rules/0/measurement").startswith("unknown measurement 'spo3'")


def test_a_loinc_code_instead_of_a_name_gets_a_hint():
    problems = validate_pathway(_draft(measurement="2708-6"))
    assert "canonical name 'spo2'" in _one(problems, "/rules/0/measurement")


def test_unknown_unit():
    problems = validate_pathway(_draft(unit="percent"))
    assert "canonical unit '%'" in _one(problems, "/rules/0/unit")


def test_schedule_unit_must_be_canonical():
    draft = _draft()
    draft["measurements"][1]["unit"] = "[lb_av]"
    assert "'kg'" in _one(validate_pathway(draft), "/measurements/1/unit")


def test_red_below_yellow_for_a_rising_threshold():
    rule = {
        "id": "weight-gain",
        "type": "change",
        "measurement": "weight",
        "unit": "kg",
        "op": ">",
        "thresholds": {"yellow": 3.0, "red": 2.0},
        "window_hours": 72,
    }
    problems = validate_pathway(pathway_doc([SPO2_BANDS, rule]))
    assert "more severe level would fire first" in _one(problems, "/rules/1/thresholds/red")


def test_red_above_yellow_for_a_falling_threshold():
    rule = {
        "id": "spo2-twice",
        "type": "consecutive",
        "measurement": "spo2",
        "unit": "%",
        "op": "<",
        "thresholds": {"yellow": 88, "red": 90},
        "count": 2,
        "window_hours": 24,
    }
    problems = validate_pathway(pathway_doc([SPO2_BANDS, rule]))
    assert "'red' threshold 90 is above" in _one(problems, "/rules/1/thresholds/red")


def test_red_band_nearer_normal_than_yellow_is_refused():
    # heart rate: red at 100–120 but only yellow above 120 makes no sense
    rule = {
        "id": "hr",
        "type": "bands",
        "measurement": "heart_rate",
        "unit": "/min",
        "bands": [
            {"le": 40, "level": "red"},
            {"gt": 40, "le": 100},
            {"gt": 100, "le": 120, "level": "red"},
            {"gt": 120, "level": "yellow"},
        ],
    }
    problems = validate_pathway(pathway_doc([rule]))
    assert "nearer the normal range" in _one(problems, "/rules/0/bands/2/level")


def test_direction_low_refuses_severity_at_high_values():
    draft = _draft(
        bands=[{"lt": 88, "level": "red"}, {"ge": 88, "lt": 98}, {"ge": 98, "level": "yellow"}]
    )
    assert "direction 'low'" in _one(validate_pathway(draft), "/rules/0/bands/2/level")


def test_same_chart_is_fine_when_direction_is_both():
    draft = _draft(
        direction="both",
        bands=[{"lt": 88, "level": "red"}, {"ge": 88, "lt": 98}, {"ge": 98, "level": "yellow"}],
    )
    assert validate_pathway(draft) == []


def test_every_red_rule_disabled():
    problems = validate_pathway(_draft(enabled=False))
    assert _one(problems, "/rules").startswith("every 'red' rule is disabled")


def test_no_red_rule_at_all():
    draft = _draft(bands=[{"lt": 88, "level": "yellow"}, {"ge": 88}])
    assert _one(validate_pathway(draft), "/rules").startswith("no rule can raise 'red'")


def test_red_only_from_a_rule_that_does_not_count_for_triage():
    problems = validate_pathway(_draft(triage=False))
    assert "/rules" in _paths(problems)


def test_unknown_questionnaire_item():
    rule = {
        "id": "q",
        "type": "questionnaire",
        "questionnaire": "heart-failure-symptoms",
        "item": "wound_pain",
        "op": ">=",
        "thresholds": {"yellow": 2},
    }
    problems = validate_pathway(pathway_doc([SPO2_BANDS, rule]))
    assert _one(problems, "/rules/1/item").startswith("unknown item 'wound_pain'")


def test_unknown_questionnaire_and_unsent_questionnaire():
    rule = {
        "id": "q",
        "type": "questionnaire",
        "questionnaire": "copd-symptoms",
        "item": "cough",
        "op": ">=",
        "thresholds": {"yellow": 2},
    }
    problems = validate_pathway(pathway_doc([SPO2_BANDS, rule]))
    assert "not sent in this pathway" in _one(problems, "/rules/1/questionnaire")
    draft = pathway_doc([SPO2_BANDS], questionnaires=[{"id": "knee-symptoms", "per_day": 1}])
    assert "unknown questionnaire" in _one(validate_pathway(draft), "/questionnaires/0/id")


def test_questionnaire_threshold_outside_answer_range():
    rule = {
        "id": "q",
        "type": "questionnaire",
        "questionnaire": "heart-failure-symptoms",
        "item": "fatigue",
        "op": ">=",
        "thresholds": {"yellow": 4},
    }
    problems = validate_pathway(pathway_doc([SPO2_BANDS, rule]))
    assert "outside the answer range 0–3" in _one(problems, "/rules/1/thresholds/yellow")


def test_unknown_level():
    problems = validate_pathway(_draft(bands=[{"lt": 88, "level": "purple"}, {"ge": 88}]))
    assert "/rules/0/bands/0/level" in _paths(problems)


def test_references_to_unknown_or_disabled_rules_and_cycles():
    combo = {
        "id": "combo",
        "type": "combination",
        "require": "all",
        "rules": ["spo2-low", "nope"],
        "level": "red",
    }
    loop_a = {
        "id": "a",
        "type": "combination",
        "require": "any",
        "rules": ["b", "spo2-low"],
        "level": "yellow",
    }
    loop_b = {
        "id": "b",
        "type": "combination",
        "require": "any",
        "rules": ["a", "spo2-low"],
        "level": "yellow",
    }
    problems = validate_pathway(pathway_doc([SPO2_BANDS, combo, loop_a, loop_b]))
    assert "unknown rule 'nope'" in _one(problems, "/rules/1/rules/1")
    assert "depends on itself" in _one(problems, "/rules/2")


def test_score_components_must_give_points():
    score = {
        "id": "s",
        "type": "score",
        "name": "S",
        "components": ["twice"],
        "op": ">=",
        "thresholds": {"red": 1},
    }
    twice = {
        "id": "twice",
        "type": "consecutive",
        "measurement": "spo2",
        "unit": "%",
        "op": "<",
        "thresholds": {"yellow": 90},
        "count": 2,
        "window_hours": 24,
    }
    problems = validate_pathway(pathway_doc([SPO2_BANDS, twice, score]))
    assert "not bands or category" in _one(problems, "/rules/2/components/0")


def test_duplicate_rule_id_including_rule_set_ids():
    dup = {**SPO2_BANDS, "id": "news2"}
    problems = validate_pathway(pathway_doc([SPO2_BANDS, dup], rule_sets=["news2"]))
    assert "used twice" in _one(problems, "/rules/1/id")


def test_unknown_rule_set_and_option_target():
    draft = pathway_doc(
        [SPO2_BANDS],
        rule_sets=["news3"],
        options=[
            {"id": "x", "label_nb": "x", "label_en": "x", "replaces_rule_sets": {"news3": "news4"}}
        ],
    )
    problems = validate_pathway(draft)
    assert "unknown rule set 'news3'" in _one(problems, "/rule_sets/0")
    assert "/options/0/replaces_rule_sets/news3" in _paths(problems)


def test_missed_rule_needs_a_schedule_and_a_sensible_operator():
    rule = {
        "id": "m",
        "type": "missed",
        "measurement": "glucose",
        "op": "<",
        "thresholds": {"yellow": 2},
    }
    problems = validate_pathway(pathway_doc([SPO2_BANDS, rule]))
    assert "/rules/1/op" in _paths(problems)
    assert "give 'expected_per_day'" in _one(problems, "/rules/1/expected_per_day")


def test_triage_policy_red_probability_below_yellow():
    draft = _draft()
    draft["triage"] = {"model_thresholds": {"yellow": 0.6, "red": 0.3}}
    assert "more severe level would come first" in _one(
        validate_pathway(draft), "/triage/model_thresholds/red"
    )
    draft["triage"] = {"model_thresholds": {"red": 1.3}}
    assert "outside 0–1" in _one(validate_pathway(draft), "/triage/model_thresholds/red")


def test_age_bands_gapped_and_overlapping():
    def table(a_from, a_below):
        t = {"bands": [{"le": 100}, {"gt": 100, "level": "red"}]}
        if a_from is not None:
            t["age_from_years"] = a_from
        if a_below is not None:
            t["age_below_years"] = a_below
        return t

    rule = {
        "id": "hr",
        "type": "bands",
        "measurement": "heart_rate",
        "unit": "/min",
        "tables": [table(None, 1), table(2, None)],
    }
    problems = validate_pathway(pathway_doc([rule]))
    assert "gapped age bands" in _one(problems, "/rules/0/tables/1/age_from_years")
    rule["tables"] = [table(None, 5), table(2, None)]
    problems = validate_pathway(pathway_doc([rule]))
    assert "overlapping age bands" in _one(problems, "/rules/0/tables/1/age_from_years")


def test_every_problem_is_reported_at_once():
    draft = _draft(measurement="spo3", enabled=False)
    draft["measurements"][0]["unit"] = "pct"
    assert len(validate_pathway(draft)) >= 3


def test_shipped_rule_sets_are_valid():
    from models.pathways import read_rule_set

    assert validate_rule_set(read_rule_set("news2")) == []
    assert validate_rule_set(read_rule_set("news2-scale2")) == []


def test_validate_override():
    copd = load_pathway("copd")
    ok = {
        "rule": "spo2-low",
        "reason": "Habituell SpO2 88 %",
        "author": "Lege Kari Nordmann",
        "created_s": 1,
        "expires_s": 2,
        "bands": [{"lt": 84, "level": "red"}, {"ge": 84, "lt": 86, "level": "yellow"}, {"ge": 86}],
    }
    assert validate_override(copd, ok) == []
    gapped = {**ok, "bands": [{"lt": 84, "level": "red"}, {"ge": 85}]}
    assert _one(validate_override(copd, gapped), "/bands/1").startswith("gap")
    unknown = {**ok, "rule": "nope"}
    assert validate_override(copd, unknown)[0].path == "/rule"
    no_expiry = {k: v for k, v in ok.items() if k != "expires_s"}
    assert "/expires_s" in _paths(validate_override(copd, no_expiry))
    thresholds_on_bands = {**ok, "bands": None, "thresholds": {"red": 85}}
    assert "no thresholds" in _one(validate_override(copd, thresholds_on_bands), "/thresholds")
    twice = {**thresholds_on_bands, "rule": "spo2-low-twice", "thresholds": {"yellow": 86}}
    assert validate_override(copd, twice) == []
    reversed_levels = {**twice, "thresholds": {"yellow": 80, "red": 86}}
    assert "/thresholds/red" in _paths(validate_override(copd, reversed_levels))
