"""Safety of the worklist: a level stays until a clinician acts, the last-data time is the newest
reading's, and a COPD patient's target saturation switches NEWS2 to SpO2 scale 2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from service.db.tables import Assessment, Patient, WorklistEvent
from tests.helpers import enrol, observation, post_fhir
from tests.service.test_scoring_and_worklist import OTHER_FNR

# Readings lie in the past: ingestion refuses future-dated ones.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)


def feed_stable_then(client, headers, pid, last_spo2, days=10, prefix=""):
    """Ten stable days of SpO2 96 % and heart rate 72, then one SpO2 reading at NOW."""
    for d in range(days, 0, -1):
        when = NOW - timedelta(days=d)
        post_fhir(
            client,
            "/fhir/Observation",
            observation(pid, "spo2", 96, when, f"{prefix}s{d}"),
            headers,
        )
        post_fhir(
            client,
            "/fhir/Observation",
            observation(pid, "heart_rate", 72, when, f"{prefix}h{d}"),
            headers,
        )
    sent = post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "spo2", last_spo2, NOW, f"{prefix}last"),
        headers,
    )
    assert sent.status_code in (200, 201), sent.text


@pytest.fixture
def settings(make_settings, any_database_url):
    return make_settings(database_url=any_database_url)


def the_item(client, headers) -> dict:
    [item] = client.get("/api/v1/worklist", headers=headers).json()
    return item


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC)


def rescore(client, pid: str, as_of: datetime) -> None:
    with client.app.state.sessions() as session:
        client.app.state.services.scoring.rescore_cohort(session, int(as_of.timestamp()), [pid])
        session.commit()


def test_new_data_that_would_lower_a_red_keeps_it_red_and_says_why(client, auth):
    clinician, integration = auth("clinician", subject="hpr-9144889"), auth("integration")
    pid = enrol(client, clinician)["id"]
    feed_stable_then(client, integration, pid, 84)  # SpO2 84 %: red (spo2-low < 88)
    red = the_item(client, clinician)
    assert red["level"] == "red" and not red["held"]
    assert parse(red["peak_at"]) == NOW
    post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "spo2", 96, NOW + timedelta(hours=1), "better"),
        integration,
    )
    item = the_item(client, clinician)
    assert item["id"] == red["id"] and item["assessment_id"] != red["assessment_id"]
    assert item["level"] == "red", "a better reading must not lower the level by itself"
    assert item["current_level"] != "red" and item["held"]
    assert parse(item["peak_at"]) == NOW
    assert any("SpO2" in r["text_en"] for r in item["peak_reasons"])
    with client.app.state.sessions() as s:
        actions = [e.action for e in s.scalars(select(WorklistEvent).order_by(WorklistEvent.id))]
    assert actions[-1] == "level-held"


def test_a_held_level_names_its_own_source_not_the_newer_assessments(client, auth):
    """A red held from a rule is "red, from a rule" on the worklist and in DIPS' Task, even after a
    green reading whose assessment was decided by nothing (it read "red, from nothing")."""
    clinician, integration = auth("clinician", subject="hpr-9144889"), auth("integration")
    pid = enrol(client, clinician)["id"]
    feed_stable_then(client, integration, pid, 84)  # SpO2 84 %: red from spo2-low
    assert the_item(client, clinician)["level_source"] in {"rule", "rule+model"}
    post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "spo2", 96, NOW + timedelta(hours=1), "better"),
        integration,
    )
    item = the_item(client, clinician)
    assert item["held"] and item["level"] == "red"
    assert item["level_source"] in {"rule", "rule+model"}
    assert item["current_level_source"] != item["level_source"]
    [task] = [
        e["resource"]
        for e in client.get(
            "/fhir/Task", params={"subject": f"Patient/{pid}"}, headers=clinician
        ).json()["entry"]
        if e["resource"]["resourceType"] == "Task"
    ]
    [source] = [x["valueCode"] for x in task["extension"] if x["url"].endswith("level-source")]
    assert source == item["level_source"]


def test_the_scheduled_rescore_never_lowers_a_level_only_acknowledging_does(client, auth):
    clinician, integration = auth("clinician", subject="hpr-9144889"), auth("integration")
    pid = enrol(client, clinician)["id"]
    feed_stable_then(client, integration, pid, 84)
    assert the_item(client, clinician)["level"] == "red"
    # A better reading, then the wall-clock re-score: on its own it would say a lower level.
    post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "spo2", 96, NOW + timedelta(hours=1), "better"),
        integration,
    )
    rescore(client, pid, NOW + timedelta(hours=3))
    with client.app.state.sessions() as s:
        newest = s.scalars(
            select(Assessment).where(Assessment.patient_id == pid).order_by(Assessment.created_at)
        ).all()[-1]
    assert newest.trigger == "schedule" and newest.level != "red"
    held = the_item(client, clinician)
    assert held["level"] == "red" and held["held"] and held["current_level"] == newest.level
    ack = client.post(
        f"/api/v1/worklist/{held['id']}/acknowledge", json={"note": "ringt"}, headers=clinician
    )
    assert ack.status_code == 200
    settled = ack.json()
    assert settled["level"] == newest.level and not settled["held"]
    # New data can raise it again, and a worse level reopens an acknowledged item.
    post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "spo2", 83, NOW + timedelta(hours=2), "worse"),
        integration,
    )
    raised = the_item(client, clinician)
    assert raised["level"] == "red" and raised["state"] == "open" and not raised["held"]


def test_last_data_is_the_newest_reading_never_the_time_of_a_rescore(client, auth):
    clinician, integration = auth("clinician"), auth("integration")
    pid = enrol(client, clinician)["id"]
    feed_stable_then(client, integration, pid, 84)
    assert parse(the_item(client, clinician)["last_data_at"]) == NOW
    rescore(client, pid, NOW + timedelta(hours=29))
    item = the_item(client, clinician)
    assert parse(item["last_data_at"]) == NOW, "a re-score is not fresh data"
    # An older reading arriving late does not make the data look newer either.
    post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "heart_rate", 75, NOW - timedelta(hours=3), "late"),
        integration,
    )
    assert parse(the_item(client, clinician)["last_data_at"]) == NOW


def news2_of(client, pid: str) -> int:
    with client.app.state.sessions() as s:
        newest = s.scalars(
            select(Assessment).where(Assessment.patient_id == pid).order_by(Assessment.created_at)
        ).all()[-1]
    return int(newest.explanation["scores"]["news2"])


def test_target_saturation_88_92_scores_spo2_on_news2_scale_2(client, auth):
    """91 % on air: 0 points on scale 2 (target 88–92 %), 3 points on scale 1."""
    clinician, integration = auth("clinician"), auth("integration")
    hypercapnic = enrol(client, clinician, target_saturation="88-92")
    assert hypercapnic["target_saturation"] == "88-92"
    assert hypercapnic["options"] == {"hypercapnic_failure": True}
    plain = enrol(client, clinician, identifier=OTHER_FNR, birth_date="1970-01-01")
    assert plain["target_saturation"] is None
    for p in (hypercapnic, plain):
        post_fhir(
            client,
            "/fhir/Observation",
            observation(p["id"], "spo2", 91, NOW, f"s-{p['id']}"),
            integration,
        )
    assert news2_of(client, hypercapnic["id"]) == 0
    assert news2_of(client, plain["id"]) == 3
    # Set later (on the patient page or here), it re-scores the patient on scale 2.
    changed = client.put(
        f"/api/v1/patients/{plain['id']}/target-saturation",
        json={"target_saturation": "88-92"},
        headers=clinician,
    )
    assert changed.status_code == 200 and changed.json()["target_saturation"] == "88-92"
    assert news2_of(client, plain["id"]) == 0
    item = next(
        i
        for i in client.get("/api/v1/worklist", headers=clinician).json()
        if i["patient"]["id"] == plain["id"]
    )
    assert item["patient"]["target_saturation"] == "88-92"
    back = client.put(
        f"/api/v1/patients/{plain['id']}/target-saturation",
        json={"target_saturation": "94-98"},
        headers=clinician,
    )
    assert back.json()["target_saturation"] == "94-98" and news2_of(client, plain["id"]) == 3


def test_target_saturation_refused_where_it_means_nothing(client, auth):
    clinician = auth("clinician")
    wrong = client.post(
        "/api/v1/patients",
        json={
            "identifier": "15076500565",
            "birth_date": "1965-07-15",
            "sex": "female",
            "pathway": "heart-failure",
            "organisation": "983974899",
            "unit": "lungs",
            "target_saturation": "88-92",
        },
        headers=clinician,
    )
    assert wrong.status_code == 422 and "target_saturation" in wrong.text
    contradictory = client.post(
        "/api/v1/patients",
        json={
            "identifier": "15076500565",
            "birth_date": "1965-07-15",
            "sex": "female",
            "pathway": "copd",
            "organisation": "983974899",
            "unit": "lungs",
            "target_saturation": "88-92",
            "options": {"hypercapnic_failure": False},
        },
        headers=clinician,
    )
    assert contradictory.status_code == 422 and "target_saturation" in contradictory.text
    pid = enrol(client, clinician)["id"]
    bad = client.put(
        f"/api/v1/patients/{pid}/target-saturation",
        json={"target_saturation": "80-85"},
        headers=clinician,
    )
    assert bad.status_code == 422 and "target_saturation" in bad.text
    with client.app.state.sessions() as s:
        assert s.get(Patient, pid).pathway_options == {}
