"""Shipped pathways, age bands, personal overrides, triage policy, options, new pathways by
configuration alone, and the versioned-store functions (hash, canonical JSON, diff)."""

import copy
import json

import pytest
from rules_helpers import AS_OF, DAY, HOUR, readings, series

from models.pathways import read_pathway
from models.rules import (
    InvalidDocument,
    Override,
    PatientReadings,
    ReadingsError,
    canonical_json,
    diff_pathways,
    evaluate,
    load_pathway,
    load_rule_set,
    load_shipped_pathways,
    pathway_hash,
    validate_pathway,
)

SHIPPED = ("copd", "heart-failure", "post-operative", "oncology", "paediatric")


def _fired(result):
    return {f.rule: f for f in result.fired}


def test_five_shipped_pathways_load_with_their_questionnaires_and_editors():
    pathways = load_shipped_pathways()
    assert set(pathways) == set(SHIPPED)
    for pathway_id, p in pathways.items():
        assert p.id == pathway_id
        assert p.editors.roles
        assert p.measurements and p.questionnaires
        assert p.questionnaires[0].id == f"{pathway_id}-symptoms"
        assert p.sources, f"{pathway_id} cites no source"


def test_questionnaire_items_match_the_questionnaires_module():
    questionnaires = pytest.importorskip("models.questionnaires")
    from models.rules.catalogue import QUESTIONNAIRE_ITEMS

    for qid, items in QUESTIONNAIRE_ITEMS.items():
        scored = questionnaires.scored_items(questionnaires.load_questionnaire(qid))
        assert set(scored) == set(items), qid


# ---------------------------------------------------------------------------------- paediatric


@pytest.mark.parametrize(("age", "level"), [(15, "red"), (0.5, "green")])
def test_same_heart_rate_is_red_at_15_and_green_at_6_months(age, level):
    paediatric = load_pathway("paediatric")
    result = evaluate(
        paediatric,
        PatientReadings.from_latest_values({"heart_rate": 150}, age_years=age, as_of_s=AS_OF),
    )
    assert result.level == level
    if level == "red":
        assert (
            _fired(result)["heart-rate-for-age"].text_en == "Heart rate > 130 /min "
            "(measured 150 /min)"
        )


@pytest.mark.parametrize(
    ("age", "rr", "level"),
    [
        (0.5, 50, "green"),
        (0.5, 75, "red"),
        (3, 50, "yellow"),
        (8, 30, "yellow"),
        (16, 30, "yellow"),
        (16, 35, "red"),
        (16, 16, "green"),
    ],
)
def test_respiratory_rate_bands_follow_age(age, rr, level):
    result = evaluate(
        load_pathway("paediatric"),
        PatientReadings.from_latest_values({"respiratory_rate": rr}, age_years=age, as_of_s=AS_OF),
    )
    assert result.level == level


def test_age_dependent_bands_need_an_age():
    result = evaluate(
        load_pathway("paediatric"),
        PatientReadings.from_latest_values({"heart_rate": 150}, as_of_s=AS_OF),
    )
    assert "heart-rate-for-age" not in _fired(result)


# ---------------------------------------------------------------------------------- overrides

HABITUAL_88 = {
    "rule": "spo2-low",
    "bands": [{"lt": 85, "level": "red"}, {"ge": 85, "lt": 87, "level": "yellow"}, {"ge": 87}],
    "reason": "Habituell SpO2 88 % ved stabil KOLS",
    "author": "lege Kari Nordmann",
    "created_s": AS_OF - 10 * DAY,
    "expires_s": AS_OF + 80 * DAY,
}


def test_override_raises_one_patients_threshold_and_shows_in_the_text():
    copd = load_pathway("copd")
    values = {"spo2": 84, "heart_rate": 80}
    patient = PatientReadings.from_latest_values(values, age_years=71, as_of_s=AS_OF)
    plain = _fired(evaluate(copd, patient))["spo2-low"]
    assert plain.override is None and plain.level == "red"

    result = evaluate(copd, patient, overrides=[HABITUAL_88])
    fired = _fired(result)["spo2-low"]
    assert fired.level == "red"
    assert fired.text_nb == (
        "SpO2 < 85 % (målt 84 %); personlig grense satt av lege Kari "
        "Nordmann den 18.05.2026: Habituell SpO2 88 % ved stabil KOLS"
    )
    assert fired.text_en.endswith(
        "personal threshold set by lege Kari Nordmann on 2026-05-18: "
        "Habituell SpO2 88 % ved stabil KOLS"
    )
    assert fired.override["author"] == "lege Kari Nordmann"
    assert result.overrides_applied[0]["rule"] == "spo2-low"

    # 88 % is yellow on the pathway's bands, green on this patient's personal ones; the
    # patient also has NEWS2 scale 2 (on scale 1, 88 % scores 3 and would stay yellow).
    usual = PatientReadings.from_latest_values(
        {"spo2": 88}, age_years=71, as_of_s=AS_OF, options={"hypercapnic_failure": True}
    )
    assert evaluate(copd, usual).level == "yellow"
    assert evaluate(copd, usual, overrides=[HABITUAL_88]).level == "green"
    scale1 = PatientReadings.from_latest_values({"spo2": 88}, age_years=71, as_of_s=AS_OF)
    assert _fired(evaluate(copd, scale1, overrides=[HABITUAL_88])).keys() == {
        "news2.single_parameter_3"
    }


def test_expired_override_is_ignored_and_said_so():
    expired = {**HABITUAL_88, "expires_s": AS_OF - DAY}
    usual = PatientReadings.from_latest_values({"spo2": 88}, age_years=71, as_of_s=AS_OF)
    result = evaluate(load_pathway("copd"), usual, overrides=[expired])
    assert result.level == "yellow"
    assert result.overrides_applied == ()
    assert result.overrides_ignored[0]["why"] == "expired or not yet valid"


def test_threshold_override_on_a_consecutive_rule():
    override = Override(
        rule="spo2-low-twice",
        thresholds={"yellow": 86},
        reason="KOLS",
        author="sykepleier Ola",
        created_s=AS_OF - DAY,
        expires_s=AS_OF + DAY,
    )
    patient = readings({"spo2": series((20, 89), (2, 89))})
    copd = load_pathway("copd")
    assert "spo2-low-twice" in _fired(evaluate(copd, patient))
    assert "spo2-low-twice" not in _fired(evaluate(copd, patient, overrides=[override]))


def test_override_of_unknown_rule_is_refused():
    bad = {**HABITUAL_88, "rule": "nope"}
    with pytest.raises(ValueError, match="unknown rule 'nope'"):
        evaluate(load_pathway("copd"), readings({}), overrides=[bad])


# ---------------------------------------------------------------------------------- triage


@pytest.mark.parametrize(
    ("spo2", "p", "level", "decided_by"),
    [
        (97, None, "green", "none"),
        (97, 0.1, "green", "none"),
        (97, 0.25, "yellow", "model"),
        (97, 0.6, "red", "model"),
        (90, 0.1, "yellow", "rules"),
        (90, 0.3, "yellow", "rules+model"),
        (90, 0.6, "red", "model"),
        (86, 0.0, "red", "rules"),
    ],
)
def test_triage_policy_combines_rules_and_model(spo2, p, level, decided_by):
    patient = PatientReadings.from_latest_values({"spo2": spo2}, age_years=70, as_of_s=AS_OF)
    result = evaluate(_resolved("copd"), patient, model_probability=p)
    assert (result.level, result.decided_by) == (level, decided_by)
    assert result.model_probability == p


def _resolved(pathway_id: str, points: dict | None = None):
    """A shipped pathway with its named operating points resolved (yellow 0.2, red 0.5)."""
    from models.operating_points import ModelPoints
    from tests.helpers import handmade_operating_points

    doc = load_pathway(pathway_id)
    model = ModelPoints.of("test", {"operating_points": points or handmade_operating_points()})
    resolved, missing = model.resolve(doc.id, doc.triage.model_thresholds)
    assert not missing
    return doc.with_model_thresholds(resolved)


def test_shipped_pathways_name_operating_points_not_probabilities():
    for pathway_id in ("copd", "heart-failure", "post-operative", "oncology", "paediatric"):
        thresholds = load_pathway(pathway_id).triage.model_thresholds
        assert thresholds and all(isinstance(v, str) for v in thresholds.values()), pathway_id


def test_an_unresolved_operating_point_cannot_raise_a_level_but_rules_still_do():
    """No model carries the name (yet): the model decides nothing, the safety rules still fire."""
    doc = load_pathway("copd")
    calm = PatientReadings.from_latest_values({"spo2": 97}, age_years=70, as_of_s=AS_OF)
    assert evaluate(doc, calm, model_probability=0.99).level == "green"
    low = PatientReadings.from_latest_values({"spo2": 84}, age_years=70, as_of_s=AS_OF)
    result = evaluate(doc, low, model_probability=0.0)
    assert (result.level, result.decided_by) == ("red", "rules")


def test_model_max_level_caps_what_the_model_alone_can_do():
    doc = read_pathway("copd")
    doc["triage"] = {"model_thresholds": {"yellow": 0.2, "red": 0.5}, "model_max_level": "yellow"}
    patient = PatientReadings.from_latest_values({"spo2": 97}, age_years=70, as_of_s=AS_OF)
    assert evaluate(doc, patient, model_probability=0.9).level == "yellow"


def test_probability_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="within 0–1"):
        evaluate(load_pathway("copd"), readings({}), model_probability=1.5)


def test_rules_that_do_not_count_for_triage_are_still_listed():
    answers = {"copd-symptoms": {"sputum_colour": series((2, 3))}}
    result = evaluate(load_pathway("copd"), readings(answers=answers))
    assert result.level == "green"
    fired = _fired(result)["copd-sputum-colour"]
    assert fired.triage is False and fired.level == "yellow"


def test_copd_exacerbation_combination_is_red():
    answers = {
        "copd-symptoms": {
            "dyspnoea": series((2, 2)),
            "sputum_colour": series((2, 2)),
            "sputum_volume": series((2, 2)),
        }
    }
    result = evaluate(load_pathway("copd"), readings(answers=answers))
    assert result.level == "red"
    assert _fired(result)["copd-exacerbation"].text_en.startswith("Possible COPD exacerbation")


def test_heart_failure_weight_gain_is_red_with_the_esc_wording():
    weights = series((72, 80.0), (48, 80.4), (24, 81.2), (1, 82.3))
    result = evaluate(load_pathway("heart-failure"), readings({"weight": weights}))
    fired = _fired(result)["weight-gain-3d"]
    assert result.level == "red"
    assert fired.text_nb == "Vektøkning over 2 kg på 3 døgn (målt +2,3 kg)"
    assert fired.text_en == "Weight gain over 2 kg in 3 days (measured +2.3 kg)"


@pytest.mark.parametrize(("temperature", "level"), [(37.9, "green"), (38.0, "red")])
def test_oncology_neutropenic_fever_at_38(temperature, level):
    patient = PatientReadings.from_latest_values(
        {"temperature": temperature}, age_years=55, as_of_s=AS_OF
    )
    result = evaluate(load_pathway("oncology"), patient)
    assert result.level == level
    if level == "red":
        assert "nøytropen feber" in _fired(result)["neutropenic-fever"].text_nb


# ---------------------------------------------------------------------------------- options


def test_copd_option_switches_to_news2_scale2():
    copd = load_pathway("copd")
    values = {"spo2": 88, "on_oxygen": False}
    default = evaluate(copd, PatientReadings.from_latest_values(values, as_of_s=AS_OF))
    scale2 = evaluate(
        copd,
        PatientReadings.from_latest_values(
            values, as_of_s=AS_OF, options={"hypercapnic_failure": True}
        ),
    )
    assert default.rule_sets == {"news2": 1} and default.scores["news2"] == 3
    assert scale2.rule_sets == {"news2-scale2": 1} and scale2.scores["news2"] == 0
    assert scale2.options == {"hypercapnic_failure": True}


def test_unknown_option_is_refused():
    with pytest.raises(ReadingsError, match="unknown pathway option"):
        evaluate(
            load_pathway("copd"),
            PatientReadings.from_latest_values({}, as_of_s=AS_OF, options={"x": True}),
        )


# ---------------------------------------------------------------------------------- dry runs


def test_dry_run_refuses_unknown_names_and_implausible_values():
    with pytest.raises(ReadingsError, match="unknown measurement 'spo3'"):
        PatientReadings.from_latest_values({"spo3": 95})
    with pytest.raises(ReadingsError, match="spo2: 120"):
        PatientReadings.from_latest_values({"spo2": 120})
    with pytest.raises(ReadingsError, match="consciousness"):
        PatientReadings.from_latest_values({"consciousness": "drowsy"})


def test_dry_run_on_an_invalid_draft_lists_problems():
    draft = read_pathway("copd")
    draft["rules"][0]["unit"] = "percent"
    with pytest.raises(InvalidDocument) as info:
        evaluate(draft, PatientReadings.from_latest_values({"spo2": 90}, as_of_s=AS_OF))
    assert info.value.problems[0].path == "/rules/0/unit"


def test_evaluation_records_the_exact_version():
    result = evaluate(load_pathway("heart-failure"), readings({}))
    assert result.pathway == "heart-failure" and result.pathway_version == 1
    assert result.pathway_hash == pathway_hash(load_pathway("heart-failure"))
    json.dumps(result.to_dict())  # JSON-ready as is


# ---------------------------------------------------------------------------------- new pathway

PREGNANCY_HYPERTENSION = {
    "id": "pregnancy-hypertension",
    "version": 1,
    "title_nb": "Svangerskapshypertensjon",
    "title_en": "Hypertension in pregnancy",
    "measurements": [
        {"measurement": "systolic_bp", "unit": "mm[Hg]", "per_day": 2},
        {"measurement": "diastolic_bp", "unit": "mm[Hg]", "per_day": 2},
        {"measurement": "weight", "unit": "kg", "per_day": 1},
    ],
    "rules": [
        {
            "id": "systolic",
            "type": "bands",
            "measurement": "systolic_bp",
            "unit": "mm[Hg]",
            "direction": "high",
            "source": "NICE NG133 (2019): severe hypertension ≥ 160/110",
            "bands": [
                {"lt": 140},
                {"ge": 140, "lt": 160, "level": "yellow"},
                {"ge": 160, "level": "red"},
            ],
        },
        {
            "id": "diastolic",
            "type": "bands",
            "measurement": "diastolic_bp",
            "unit": "mm[Hg]",
            "direction": "high",
            "bands": [
                {"lt": 90},
                {"ge": 90, "lt": 110, "level": "yellow"},
                {"ge": 110, "level": "red"},
            ],
        },
        {
            "id": "raised-twice",
            "type": "consecutive",
            "measurement": "systolic_bp",
            "unit": "mm[Hg]",
            "op": ">=",
            "thresholds": {"red": 150},
            "count": 2,
            "window_hours": 12,
        },
        {
            "id": "oedema-weight",
            "type": "change",
            "measurement": "weight",
            "unit": "kg",
            "op": ">",
            "thresholds": {"yellow": 1.0},
            "window_hours": 48,
        },
        {
            "id": "bp-overdue",
            "type": "missed",
            "measurement": "systolic_bp",
            "measure": "hours_since_last",
            "op": ">",
            "thresholds": {"yellow": 24},
        },
    ],
    "triage": {"model_thresholds": {}},
    "model": None,
    "editors": {"roles": ["clinician"], "units": ["fodeavdeling"]},
}


def test_new_pathway_by_configuration_alone_end_to_end():
    assert validate_pathway(PREGNANCY_HYPERTENSION) == []
    patient = readings(
        {
            "systolic_bp": series((8, 152), (1, 155)),
            "diastolic_bp": series((1, 95)),
            "weight": series((40, 70.0), (1, 71.5)),
        },
        age=31,
    )
    result = evaluate(PREGNANCY_HYPERTENSION, patient)
    assert result.pathway == "pregnancy-hypertension"
    assert result.level == "red"
    assert set(_fired(result)) == {"raised-twice", "systolic", "diastolic", "oedema-weight"}
    assert _fired(result)["raised-twice"].text_nb == (
        "Systolisk blodtrykk minst 150 mmHg to ganger på 12 timer (målt 152, 155 mmHg)"
    )
    calm = readings({"systolic_bp": series((1, 120)), "diastolic_bp": series((1, 75))}, age=31)
    assert evaluate(PREGNANCY_HYPERTENSION, calm).level == "green"


# ---------------------------------------------------------------------------------- store


def test_canonical_json_and_hash_ignore_formatting_and_version():
    doc = read_pathway("heart-failure")
    shuffled = json.loads(json.dumps(doc, sort_keys=True))
    shuffled["rules"][0]["thresholds"] = {"red": 2, "yellow": 1.5}  # int vs float, key order
    assert canonical_json(doc) == canonical_json(shuffled)
    bumped = {**doc, "version": 7}
    assert pathway_hash(bumped) == pathway_hash(doc)
    changed = copy.deepcopy(doc)
    changed["rules"][0]["thresholds"]["red"] = 2.5
    assert pathway_hash(changed) != pathway_hash(doc)
    assert pathway_hash(doc).startswith("sha256:") and len(pathway_hash(doc)) == 71


def test_diff_names_rules_by_id_and_reads_for_clinicians():
    old = read_pathway("heart-failure")
    new = copy.deepcopy(old)
    new["version"] = 2
    new["rules"][0]["thresholds"]["red"] = 2.5
    new["rules"].insert(
        0,
        {
            "id": "glucose-high",
            "type": "bands",
            "measurement": "glucose",
            "unit": "mmol/L",
            "bands": [{"lt": 15}, {"ge": 15, "level": "red"}],
        },
    )
    del new["rules"][-1]
    changes = {c.path: c for c in diff_pathways(old, new)}
    assert set(changes) == {
        "/version",
        "/rules/weight-gain-3d/thresholds/red",
        "/rules/glucose-high",
        "/rules/weight-missed",
    }
    red = changes["/rules/weight-gain-3d/thresholds/red"]
    assert (red.kind, red.old, red.new) == ("changed", 2.0, 2.5)
    assert red.text_nb == "Endret rules › weight-gain-3d › thresholds › red: 2.0 → 2.5"
    assert changes["/rules/glucose-high"].kind == "added"
    assert changes["/rules/weight-missed"].text_en.startswith("Removed rules › weight-missed")
    assert diff_pathways(old, old) == []


def test_rule_sets_are_versioned_documents_too():
    news2 = load_rule_set("news2")
    assert news2.version == 1
    assert pathway_hash(news2) != pathway_hash(load_rule_set("news2-scale2"))
    _ = HOUR


def test_the_package_docstring_example_runs_as_written():
    import models.rules

    example = models.rules.__doc__.split("::", 1)[1]
    lines = [ln[4:] for ln in example.splitlines() if ln.strip()]
    namespace: dict = {}
    exec(
        "from models.rules import *\n"
        + "\n".join(ln for ln in lines if not ln.startswith("result.")),
        namespace,
    )
    result = namespace["result"]
    assert result.level == "red"
    assert result.fired[0].text_nb.startswith(
        "SpO2 < 85 % (målt 84 %); personlig grense satt av lege Kari Nordmann den 21.05.2026"
    )
