"""Simulator: determinism, cohort shape, identifiers, prodrome statistics, FHIR output."""

from datetime import date

import numpy as np
import pytest

from models.features import FEATURE_INDEX, HISTORY_CHANNELS, compute_features
from models.identifiers import is_valid_person_number, with_classic_check_digits
from models.measurements import MEASUREMENTS
from models.questionnaires import answers_from_response, questionnaire_by_url, score_answers
from tests.fhir_r4 import validate_r4
from training.simulator import (
    PATHWAYS,
    cohort_to_fhir,
    fhir_bundles,
    simulate_cohort,
    synthetic_fnr,
)


def test_same_seed_same_cohort_other_seed_other_cohort():
    a = simulate_cohort(20, 20, seed=5)
    b = simulate_cohort(20, 20, seed=5)
    c = simulate_cohort(20, 20, seed=6)
    for field in ("patient", "channel", "time_s", "value", "message_id"):
        np.testing.assert_array_equal(getattr(a.readings, field), getattr(b.readings, field))
    assert [p.identifier for p in a.patients] == [p.identifier for p in b.patients]
    assert [q.answers for q in a.questionnaire_answers] == [
        q.answers for q in b.questionnaire_answers
    ]
    assert not np.array_equal(a.readings.value[:50], c.readings.value[:50])


def test_five_pathways_with_plausible_people(small_cohort):
    patients = small_cohort.patients
    assert {p.pathway for p in patients} == set(PATHWAYS)
    children = [p for p in patients if p.pathway == "paediatric"]
    adults = [p for p in patients if p.pathway != "paediatric"]
    assert all(0 <= p.age_years < 18 for p in children)
    assert all(p.age_years >= 18 for p in adults)
    assert {p.sex for p in patients} == {"female", "male"}
    assert all(is_valid_person_number(p.identifier) for p in patients)
    assert all(int(p.identifier[2:4]) > 80 for p in patients)  # synthetic: month + 80
    assert "identifier" not in repr(patients[0])


def test_synthetic_numbers_follow_the_shared_identifier_rules():
    # 01019012345: remainder 10 for K1, so no classic number has these nine digits.
    assert with_classic_check_digits("010190123") is None
    rng = np.random.default_rng(0)
    for _ in range(50):
        value = synthetic_fnr(date(1950, 3, 1), rng, synthetic_month=False)
        assert is_valid_person_number(value) and value.startswith("010350")
        broken = value[:10] + str((int(value[10]) + 1) % 10)
        assert not is_valid_person_number(broken)


def test_readings_are_plausible_and_duplicates_share_ids(small_cohort):
    r = small_cohort.readings
    for name, m in MEASUREMENTS.items():
        v = r.value[r.channel == name]
        if len(v):
            assert m.plausible_min <= v.min() and v.max() <= m.plausible_max, name
    keys = np.char.add(r.message_id.astype(str), r.channel.astype(str))
    _, counts = np.unique(keys, return_counts=True)
    assert (counts == 2).sum() > 0  # duplicate sends exist …
    history = small_cohort.history()
    assert len(history.time_s) < (np.isin(r.channel, HISTORY_CHANNELS)).sum()  # … and are dropped
    assert set(np.unique(r.channel[r.channel == "symptom_score"])) == {"symptom_score"}
    sym = r.value[r.channel == "symptom_score"]
    assert sym.min() >= 0 and sym.max() <= 10


def test_labels_and_prodromes(small_cohort, small_dataset):
    """Before events the vitals move the clinical way; look-alikes exist among negatives."""
    X, y, meta = small_dataset
    assert 0.01 < y.mean() < 0.15
    assert set(meta["trigger"]) == {"reading", "scheduled"}
    pos = y == 1
    assert (meta["time_to_event_h"][pos] <= 72).all()
    for feature, sign in (
        ("spo2_pct_delta_baseline", -1),
        ("heart_rate_bpm_delta_baseline", 1),
        ("symptom_score_latest", 1),
    ):
        col = X[:, FEATURE_INDEX[feature]]
        near = pos & (meta["time_to_event_h"].to_numpy() <= 24)
        diff = np.nanmean(col[near]) - np.nanmean(col[~pos])
        assert sign * diff > 0, feature
    temp = X[:, FEATURE_INDEX["temperature_c_delta_baseline"]]
    benign_fever = (~pos) & (np.nan_to_num(temp) > 0.8)
    assert benign_fever.sum() > 10  # benign fevers that look like a prodrome


def test_prodrome_lengths_and_strengths_vary():
    cohort = simulate_cohort(200, 60, seed=3, pathways=["heart-failure"])
    X_events = []
    hist = cohort.history()
    for p in cohort.patients:
        for onset in cohort.event_onset_s[p.key]:
            if onset - 8 * 86400 < cohort.start_s or onset > cohort.start_s + 60 * 86400:
                continue
            times = onset - np.array([7, 4, 1]) * 86400 + 3600
            X, _ = compute_features(hist, np.full(3, p.key), times, np.full(3, p.age_years))
            X_events.append(X[:, FEATURE_INDEX["weight_kg_delta_baseline"]])
    gains = np.array(X_events)
    assert len(gains) > 20
    # Weight rises towards onset [Chaudhry 2007], with a spread of strengths.
    assert np.nanmean(gains[:, 2]) > np.nanmean(gains[:, 0]) + 0.5
    assert np.nanstd(gains[:, 2]) > 0.5


def test_fhir_resources_are_valid_and_round_trip(small_cohort):
    ref = {p.key: {"reference": f"Patient/{p.key}"} for p in small_cohort.patients}
    resources = list(cohort_to_fhir(small_cohort, lambda p: ref[p.key]))
    kinds = {r["resourceType"] for r in resources}
    assert kinds == {"Observation", "QuestionnaireResponse"}
    panels = [
        r
        for r in resources
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "85354-9"
    ]
    assert panels
    bp = panels[0]
    assert [c["code"]["coding"][0]["code"] for c in bp["component"]] == ["8480-6", "8462-4"]
    for r in [*resources[:300], bp]:
        if r["resourceType"] == "Observation":
            validate_r4(r)
            assert r["meta"]["profile"][0].startswith("http://hl7.no/fhir/StructureDefinition/")
            assert r["category"][0]["coding"][0]["code"] == "vital-signs"
            assert r["identifier"][0]["value"] and r["performer"] and r["device"]
    qrs = [r for r in resources if r["resourceType"] == "QuestionnaireResponse"][:50]
    for r in qrs:
        validate_r4(r)
    first = small_cohort.questionnaire_answers[0]
    qr = next(
        r
        for r in resources
        if r["resourceType"] == "QuestionnaireResponse"
        and r["identifier"]["value"] == first.message_id
    )
    assert answers_from_response(qr) == first.answers
    score = score_answers(questionnaire_by_url(qr["questionnaire"]), answers_from_response(qr))
    stored = small_cohort.readings.value[
        (small_cohort.readings.message_id == first.message_id)
        & (small_cohort.readings.channel == "symptom_score")
    ]
    assert stored[0] == pytest.approx(score.symptom_score, abs=1e-4)
    bundles = list(fhir_bundles(iter(resources[:250]), batch_size=100))
    assert [len(b["entry"]) for b in bundles] == [100, 100, 50]
    validate_r4(bundles[0])
    assert bundles[0]["type"] == "batch"
    assert bundles[0]["entry"][0]["request"] == {"method": "POST", "url": "Observation"}


def test_prodrome_statistics_per_pathway(small_cohort):
    from training.simulator import PROFILES

    lengths: dict[str, list[float]] = {}
    strengths = []
    for p in small_cohort.patients:
        for _, length_s, strength in small_cohort.prodromes[p.key]:
            lengths.setdefault(p.pathway, []).append(length_s / 86400)
            strengths.append(strength)
        assert len(small_cohort.prodromes[p.key]) == len(p.events)
    assert set(lengths) == set(PATHWAYS)
    for pathway, values in lengths.items():
        lo, hi = PROFILES[pathway].prodrome_days
        assert lo <= min(values) and max(values) <= hi, pathway
        assert lo >= 1 and hi <= 7
    strengths = np.array(strengths)
    weak = (strengths < 0.25).mean()
    assert 0.05 < weak < 0.35  # ~15 % nearly silent events, by design
    assert strengths.max() > 1.2  # and some strong ones
    assert sum(len(b) for b in small_cohort.benign_episodes) > len(small_cohort.patients) // 2


def test_stronger_prodromes_move_vitals_more():
    cohort = simulate_cohort(200, 60, seed=4, pathways=["copd"])
    hist = cohort.history()
    drops, strength = [], []
    for p in cohort.patients:
        for onset, _, s in cohort.prodromes[p.key]:
            if onset > cohort.start_s + 60 * 86400 or onset - 15 * 86400 < cohort.start_s:
                continue
            X, _ = compute_features(
                hist, np.array([p.key]), np.array([onset - 1]), np.array([p.age_years])
            )
            drop = X[0, FEATURE_INDEX["spo2_pct_delta_baseline"]]
            if np.isfinite(drop):
                drops.append(drop)
                strength.append(s)
    drops, strength = np.array(drops), np.array(strength)
    assert len(drops) > 30
    strong, weak = drops[strength > np.median(strength)], drops[strength <= np.median(strength)]
    assert strong.mean() < weak.mean() - 0.5  # SpO2 falls further in strong prodromes
    assert np.corrcoef(strength, drops)[0, 1] < -0.3
