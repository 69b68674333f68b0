"""Scoring on ingestion, exact explanations, reference time, replay, and the worklist workflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from models.features import FEATURE_INDEX, N_FEATURES
from service.db.tables import Assessment, WorklistItem
from tests.helpers import FNR_ADULT, enrol, observation, post_fhir

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
OTHER_FNR = "01017000027"  # valid synthetic numbers (classic check digits)


@pytest.fixture
def settings(make_settings, any_database_url):
    """These store tests run on SQLite and on PostgreSQL."""
    return make_settings(database_url=any_database_url)


def feed_stable_then(client, headers, pid, last_spo2, days=10, prefix="m"):
    """Ten stable days of SpO2 96 % and heart rate 72, then one reading of ``last_spo2``."""
    for d in range(days, 0, -1):
        when = NOW - timedelta(days=d)
        post_fhir(
            client,
            "/fhir/Observation",
            observation(pid, "spo2", 96, when, f"{prefix}-s{d}"),
            headers,
        )
        post_fhir(
            client,
            "/fhir/Observation",
            observation(pid, "heart_rate", 72, when, f"{prefix}-h{d}"),
            headers,
        )
    return post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "spo2", last_spo2, NOW, f"{prefix}-last"),
        headers,
    )


def assessments(client, pid) -> list[Assessment]:
    with client.app.state.sessions() as s:
        return list(
            s.scalars(
                select(Assessment)
                .where(Assessment.patient_id == pid)
                .order_by(Assessment.created_at)
            )
        )


def test_every_ingestion_stores_an_immutable_assessment_with_provenance(client, auth):
    pid = enrol(client, auth("clinician"))["id"]
    feed_stable_then(client, auth("integration"), pid, 88)
    latest = assessments(client, pid)[-1]
    assert latest.model_name == "handmade-test-model" and latest.model_version == "0.0.1"
    assert latest.as_of == NOW or latest.as_of.replace(tzinfo=UTC) == NOW
    assert latest.rule_set_hash and latest.pathway_id == "copd"
    assert len(latest.features) == N_FEATURES and len(latest.basis) > 1
    explanation = latest.explanation
    total = (
        explanation["intercept"]
        + explanation["pathway_baseline"]
        + sum(explanation["contributions"].values())
    )
    assert total == pytest.approx(explanation["logit"], abs=1e-9)
    top = explanation["top_factors"][0]
    assert top["feature"].startswith("spo2_pct") and top["direction"] == "raises"
    assert "SpO2" in top["text_nb"] and "SpO2" in top["text_en"]


def test_reference_time_is_the_newest_observation_so_a_backlog_scores_as_live(client, auth):
    """The same history, sent live or as a late backlog in shuffled order, scores the same."""
    integration, clinician = auth("integration"), auth("clinician")
    live = enrol(client, clinician)["id"]
    feed_stable_then(client, integration, live, 89, prefix="live")
    backlog = enrol(client, clinician, identifier=OTHER_FNR, birth_date="1970-01-01")["id"]
    messages = []
    for d in range(10, 0, -1):
        when = NOW - timedelta(days=d)
        messages += [
            observation(backlog, "spo2", 96, when, f"bl-s{d}"),
            observation(backlog, "heart_rate", 72, when, f"bl-h{d}"),
        ]
    messages.append(observation(backlog, "spo2", 89, NOW, "bl-last"))
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": m} for m in reversed(messages)],
    }
    assert post_fhir(client, "/fhir", bundle, integration).status_code == 200
    a_live, a_backlog = assessments(client, live)[-1], assessments(client, backlog)[-1]
    age_band = 27  # the two patients differ only in age
    assert a_live.features[:age_band] == a_backlog.features[:age_band]
    assert a_live.as_of.replace(tzinfo=UTC) == a_backlog.as_of.replace(tzinfo=UTC) == NOW


def test_replaying_history_reproduces_the_assessment(client, auth):
    pid = enrol(client, auth("clinician"))["id"]
    feed_stable_then(client, auth("integration"), pid, 90)
    original = assessments(client, pid)[-1]
    services = client.app.state.services
    with client.app.state.sessions() as session:
        from service.db.tables import Patient

        patient = session.get(Patient, pid)
        replay = services.scoring.score(
            session, patient, "replay", int(original.as_of.replace(tzinfo=UTC).timestamp())
        )
        assert replay.assessment.features == original.features
        assert replay.assessment.probability == pytest.approx(original.probability, abs=1e-12)
        session.rollback()


def test_missing_measurement_is_said_never_a_silent_zero(client, auth):
    pid = enrol(client, auth("clinician"))["id"]
    integration = auth("integration")
    for d in range(6, 3, -1):
        post_fhir(
            client,
            "/fhir/Observation",
            observation(pid, "spo2", 95, NOW - timedelta(days=d), f"s{d}"),
            integration,
        )
    post_fhir(
        client, "/fhir/Observation", observation(pid, "heart_rate", 75, NOW, "hr"), integration
    )
    latest = assessments(client, pid)[-1]
    assert latest.features[0] is None  # spo2_pct_latest: no SpO2 in the last 3 days
    assert "spo2_pct_latest" in latest.explanation["contributions"]


def test_worklist_orders_by_level_then_risk_then_waiting(client, auth):
    clinician, integration = auth("clinician"), auth("integration")
    mild = enrol(client, clinician)["id"]
    severe = enrol(client, clinician, identifier=OTHER_FNR, birth_date="1970-01-01")["id"]
    feed_stable_then(client, integration, mild, 92, prefix="mild")
    feed_stable_then(client, integration, severe, 84, prefix="severe")
    items = client.get("/api/v1/worklist", headers=clinician).json()
    assert [i["patient"]["id"] for i in items][:2] == [severe, mild]
    ranks = {"red": 0, "yellow": 1, "green": 2}
    keys = [(ranks[i["level"]], -i["probability"]) for i in items]
    assert keys == sorted(keys)
    first = items[0]
    assert first["patient"]["display_identifier"].endswith("*****")
    assert FNR_ADULT not in str(items) and OTHER_FNR not in str(items)
    assert first["top_factors"] and first["last_data_at"] and first["state"] == "open"


def test_transitions_and_illegal_moves(client, auth):
    clinician = auth("clinician", subject="hpr-1234567")
    pid = enrol(client, clinician)["id"]
    feed_stable_then(client, auth("integration"), pid, 84)
    item = client.get("/api/v1/worklist", headers=clinician).json()[0]["id"]
    ack = client.post(
        f"/api/v1/worklist/{item}/acknowledge", json={"note": "ringt pasienten"}, headers=clinician
    )
    assert ack.status_code == 200
    assert ack.json()["state"] == "acknowledged"
    assert ack.json()["acknowledged_by"] == "hpr-1234567" and ack.json()["acknowledged_at"]
    assert client.post(f"/api/v1/worklist/{item}/acknowledge", headers=clinician).status_code == 409
    escalated = client.post(
        f"/api/v1/worklist/{item}/escalate", json={"recipient": "unit:lungs"}, headers=clinician
    )
    assert escalated.json()["state"] == "escalated", escalated.text
    resolved = client.post(
        f"/api/v1/worklist/{item}/resolve", json={"note": "innlagt"}, headers=clinician
    )
    assert resolved.json()["state"] == "resolved", resolved.text
    assert client.post(f"/api/v1/worklist/{item}/escalate", headers=clinician).status_code == 409
    assert client.post(f"/api/v1/worklist/{item}/frobnicate", headers=clinician).status_code == 422
    assert (
        client.post("/api/v1/worklist/no-such-item/resolve", headers=clinician).status_code == 404
    )


def test_new_data_updates_the_open_item_or_opens_a_new_one(client, auth):
    clinician, integration = auth("clinician"), auth("integration")
    pid = enrol(client, clinician)["id"]
    feed_stable_then(client, integration, pid, 84)
    [item] = client.get("/api/v1/worklist", headers=clinician).json()
    post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "heart_rate", 120, NOW + timedelta(minutes=1), "later"),
        integration,
    )
    [updated] = client.get("/api/v1/worklist", headers=clinician).json()
    assert updated["id"] == item["id"] and updated["assessment_id"] != item["assessment_id"]
    client.post(
        f"/api/v1/worklist/{item['id']}/resolve", json={"note": "stabil"}, headers=clinician
    )
    post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "spo2", 83, NOW + timedelta(minutes=2), "again"),
        integration,
    )
    [fresh] = client.get("/api/v1/worklist", headers=clinician).json()
    assert fresh["id"] != item["id"] and fresh["state"] == "open"
    with client.app.state.sessions() as s:
        assert len(s.scalars(select(WorklistItem)).all()) == 2


def test_clinicians_see_only_their_units(client, auth):
    clinician = auth("clinician")
    enrol(client, clinician, unit="lungs")
    other = enrol(client, clinician, identifier=OTHER_FNR, birth_date="1970-01-01", unit="heart")
    feed_stable_then(client, auth("integration"), other["id"], 84)
    lungs_only = auth("clinician", units=["lungs"])
    assert client.get("/api/v1/worklist", headers=lungs_only).json() == []
    assert client.get(f"/api/v1/patients/{other['id']}", headers=lungs_only).status_code == 404
    other_org = auth("clinician", organisation="974557746")
    assert client.get("/api/v1/worklist", headers=other_org).json() == []
    assert len(client.get("/api/v1/worklist?unit=heart", headers=clinician).json()) == 1


def test_patient_assessment_history(client, auth):
    clinician = auth("clinician")
    pid = enrol(client, clinician)["id"]
    feed_stable_then(client, auth("integration"), pid, 88)
    history = client.get(f"/api/v1/patients/{pid}/assessments?limit=3", headers=clinician)
    assert history.status_code == 200
    body = history.json()
    assert len(body) == 3 and body[0]["created_at"] >= body[1]["created_at"]
    assert body[0]["explanation"]["top_factors"]


def test_cohort_rescoring_equals_one_at_a_time(client, auth):
    """The vectorised batch path stores what the single path would, patient by patient."""
    clinician, integration = auth("clinician"), auth("integration")
    a = enrol(client, clinician)["id"]
    b = enrol(client, clinician, identifier=OTHER_FNR, birth_date="1970-01-01")["id"]
    feed_stable_then(client, integration, a, 86, prefix="a")
    feed_stable_then(client, integration, b, 95, prefix="b")
    as_of = int((NOW + timedelta(hours=30)).timestamp())  # a day and more without data
    services = client.app.state.services
    from service.db.tables import Patient

    with client.app.state.sessions() as session:
        singles = {}
        for pid in (a, b):
            assessment, _ = services.scoring.assess(
                session, session.get(Patient, pid), "schedule", as_of
            )
            singles[pid] = assessment
        stored = services.scoring.rescore_cohort(session, as_of, [a, b])
        session.commit()
    assert stored == 2
    for pid in (a, b):
        batch = assessments(client, pid)[-1]
        assert batch.trigger == "schedule"
        assert batch.features == singles[pid].features
        assert batch.probability == pytest.approx(singles[pid].probability, abs=1e-12)
        assert batch.level == singles[pid].level
        assert [r["rule"] for r in batch.explanation["rules"]] == [
            r["rule"] for r in singles[pid].explanation["rules"]
        ]
    hours = batch.features[FEATURE_INDEX["hours_since_last_measurement_h"]]
    assert hours == pytest.approx(30.0)


def test_other_organisations_cannot_see_a_patient_whatever_their_role(client, auth):
    pid = enrol(client, auth("clinician"))["id"]
    for role in ("clinician", "admin"):
        status = client.get(
            f"/api/v1/patients/{pid}", headers=auth(role, organisation="974557746")
        ).status_code
        assert status == (200 if role == "admin" else 404)
    cds = client.post(
        "/cds-services/home-followup-risk",
        headers=auth("integration", organisation="974557746"),
        json={
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "hook": "patient-view",
            "context": {"userId": "Practitioner/1", "patientId": pid},
        },
    )
    assert cds.status_code in (200, 412) and not cds.json().get("cards")


def test_scheduled_rescoring_commits_in_chunks_with_one_reference_time(client, auth):
    from service.jobs import rescore_all

    clinician, integration = auth("clinician"), auth("integration")
    a = enrol(client, clinician)["id"]
    b = enrol(client, clinician, identifier=OTHER_FNR, birth_date="1970-01-01")["id"]
    feed_stable_then(client, integration, a, 86, prefix="a")
    feed_stable_then(client, integration, b, 95, prefix="b")
    assert rescore_all(client.app, chunk=1) == 2  # two transactions of one patient each
    scheduled = [x for pid in (a, b) for x in assessments(client, pid) if x.trigger == "schedule"]
    assert len(scheduled) == 2
    assert len({x.as_of for x in scheduled}) == 1
