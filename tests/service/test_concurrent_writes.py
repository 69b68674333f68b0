"""Writes under contention (one app, many threads; the replica test does it across processes):
idempotent enrolment, optimistic concurrency with If-Match/ETag, the unit of work's retry, and
the invariants the database itself enforces. On SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from service.db.tables import Reading, WorklistItem
from tests.helpers import FNR_ADULT, ORG, enrol, observation, post_fhir

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def settings(make_settings, any_database_url):
    return make_settings(database_url=any_database_url)


def _enrolment(**extra: Any) -> dict[str, Any]:
    return {
        "identifier": FNR_ADULT,
        "birth_date": "1965-07-15",
        "sex": "female",
        "pathway": "copd",
        "organisation": ORG,
        "unit": "lungs",
        **extra,
    }


def _red_patient(client, auth) -> tuple[str, str]:
    """An enrolled patient with an open (red) item: (patient id, item id)."""
    pid = enrol(client, auth("clinician"))["id"]
    entries = []
    for d in range(6, 0, -1):
        entries.append(observation(pid, "spo2", 96, NOW - timedelta(days=d), f"s{d}"))
    entries.append(observation(pid, "spo2", 84, NOW, "last"))
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": e} for e in entries],
    }
    assert post_fhir(client, "/fhir", bundle, auth("integration")).status_code == 200
    items = client.get("/api/v1/worklist", headers=auth("clinician")).json()
    return pid, next(i["id"] for i in items if i["patient"]["id"] == pid)


def test_the_same_enrolment_again_is_200_with_the_existing_id(client, auth):
    first = client.post("/api/v1/patients", json=_enrolment(), headers=auth("clinician"))
    assert first.status_code == 201
    again = client.post("/api/v1/patients", json=_enrolment(), headers=auth("clinician"))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    different = client.post(
        "/api/v1/patients", json=_enrolment(unit="heart"), headers=auth("clinician")
    )
    assert different.status_code == 409
    assert FNR_ADULT not in different.text


def test_concurrent_enrolments_of_one_person_give_one_patient_and_no_500(client, auth):
    headers = auth("clinician")

    def post(_: int) -> Any:
        return client.post("/api/v1/patients", json=_enrolment(), headers=headers)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.json()["id"] for a in answers}) == 1


def test_parallel_acknowledges_one_wins_the_others_get_409_with_who(client, auth):
    _, item = _red_patient(client, auth)
    clinicians = [auth("clinician", subject=f"hpr-{n}") for n in range(6)]

    def ack(headers: dict[str, str]) -> Any:
        return client.post(f"/api/v1/worklist/{item}/acknowledge", headers=headers)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(ack, clinicians))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 5, [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200).json()["acknowledged_by"]
    for lost in (a for a in answers if a.status_code == 409):
        body = lost.json()
        assert body["changed_by"] == winner and body["changed_action"] == "acknowledge"
        assert body["current"]["state"] == "acknowledged"
        assert lost.headers["ETag"] == f'"{body["current"]["version"]}"'


def test_if_match_refuses_a_change_to_a_stale_copy(client, auth):
    _, item = _red_patient(client, auth)
    clinician = auth("clinician", subject="hpr-1")
    seen = next(i for i in client.get("/api/v1/worklist", headers=clinician).json())
    assert seen["id"] == item
    done = client.post(
        f"/api/v1/worklist/{item}/escalate",
        json={"recipient": "role:clinician"},
        headers={**auth("clinician", subject="hpr-2"), "If-Match": f'"{seen["version"]}"'},
    )
    assert done.status_code == 200 and done.headers["ETag"] == f'"{seen["version"] + 1}"'
    stale = client.post(
        f"/api/v1/worklist/{item}/acknowledge",
        headers={**clinician, "If-Match": f'"{seen["version"]}"'},
    )
    assert stale.status_code == 409
    assert stale.json()["changed_by"] == "hpr-2" and stale.json()["current"]["state"] == "escalated"
    bad = client.post(
        f"/api/v1/worklist/{item}/acknowledge", headers={**clinician, "If-Match": "nonsense"}
    )
    assert bad.status_code == 422 and bad.json()["location"] == "If-Match"


def test_data_arriving_during_a_clinicians_action_loses_neither(client, auth):
    pid, item = _red_patient(client, auth)
    integration = auth("integration")
    stop = threading.Event()
    statuses: list[int] = []

    def feed() -> None:
        n = 0
        while not stop.is_set() and n < 40:
            n += 1
            obs = observation(pid, "spo2", 85, NOW - timedelta(minutes=n), f"during-{n}")
            statuses.append(post_fhir(client, "/fhir/Observation", obs, integration).status_code)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        ack = client.post(f"/api/v1/worklist/{item}/acknowledge", headers=auth("clinician"))
    finally:
        stop.set()
        feeder.join(60)
    assert ack.status_code == 200, ack.text
    assert set(statuses) <= {200, 201}
    with client.app.state.sessions() as s:
        stored = s.get(WorklistItem, item)
        assert stored is not None and stored.acknowledged_by == "dev-clinician"


def test_four_parallel_publishes_of_one_pathway_never_500(client, auth):
    doc = client.get("/api/v1/pathways/copd", headers=auth("clinician")).json()
    pathway, version = doc["pathway"], doc["version"]

    def publish(n: int) -> Any:
        draft = {**pathway, "title_en": f"{pathway['title_en']} (edit {n})"}
        return client.put(
            "/api/v1/pathways/copd",
            json={"pathway": draft, "reason": f"edit {n}"},
            headers={**auth("clinician", subject=f"hpr-{n}"), "If-Match": f'"{version}"'},
        )

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(publish, range(4)))
    codes = sorted(a.status_code for a in answers)
    assert 500 not in codes and codes.count(201) == 1, [a.text for a in answers]
    assert all(
        a.json()["current"]["version"] == version + 1 for a in answers if a.status_code == 409
    )


def test_the_database_allows_one_active_item_per_patient_and_one_reading_per_component(
    client, auth
):
    pid, item = _red_patient(client, auth)
    with client.app.state.sessions() as s:
        original = s.get(WorklistItem, item)
        assert original is not None
        copy = {c.name: getattr(original, c.name) for c in WorklistItem.__table__.columns}
        s.expunge(original)
        s.add(WorklistItem(**{**copy, "id": "second-active-item", "version": 1}))
        with pytest.raises(IntegrityError):
            s.flush()
        s.rollback()
        reading = s.scalars(select(Reading).where(Reading.patient_id == pid)).first()
        assert reading is not None
        s.add(
            Reading(
                patient_id=pid,
                resource_id=reading.resource_id,
                name=reading.name,
                value=reading.value + 1,
                effective_s=reading.effective_s,
            )
        )
        with pytest.raises(IntegrityError):
            s.flush()
        s.rollback()


def test_the_unit_of_work_retries_a_deadlock_and_both_writers_succeed(client):
    """Two transactions lock two rows in opposite order; the database kills one, the retry wins.

    On SQLite there is one writer at a time, so the same code simply serialises them.
    """
    from service.db.unit_of_work import UnitOfWork

    sessions = client.app.state.sessions
    with sessions() as s, s.begin():
        s.execute(text("CREATE TABLE uow_probe (id INTEGER PRIMARY KEY, n INTEGER)"))
        s.execute(text("INSERT INTO uow_probe VALUES (1, 0), (2, 0)"))
    both_have_one = threading.Barrier(2, timeout=10)
    attempts: list[str] = []

    def writer(first: int, second: int, name: str) -> int:
        def work(session: Any) -> int:
            attempts.append(name)
            session.execute(text("UPDATE uow_probe SET n = n + 1 WHERE id = :i"), {"i": first})
            if attempts.count(name) == 1 and not uow.sqlite:
                both_have_one.wait()  # both hold their first row: now cross over
            session.execute(text("UPDATE uow_probe SET n = n + 1 WHERE id = :i"), {"i": second})
            return 1

        return uow.run(work)

    uow = UnitOfWork(sessions)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda a: writer(*a), [(1, 2, "a"), (2, 1, "b")]))
    assert results == [1, 1]
    with sessions() as s:
        assert [r.n for r in s.execute(text("SELECT n FROM uow_probe ORDER BY id"))] == [2, 2]
    if not uow.sqlite:
        assert len(attempts) >= 3  # a deadlock victim was retried (not a 500)


def test_scheduled_rescoring_runs_once_per_period_whichever_replica_asks(client, auth):
    """Two apps on one database stand for two replicas: the second, asking within the period,
    finds the first one's run recorded and does nothing; an explicit run (the CLI) still runs."""
    from service.jobs import rescore_all

    _red_patient(client, auth)
    first = rescore_all(client.app, min_interval_s=3600)
    assert first >= 1
    assert rescore_all(client.app, min_interval_s=3600) == 0  # the other replica, same period
    assert rescore_all(client.app) >= 1  # `triage rescore`: no period, runs
    with client.app.state.sessions() as s:
        from service.db.tables import JobRun

        run = s.get(JobRun, "rescore")
        assert run is not None and run.finished_at is not None


def test_concurrent_rescoring_and_ingestion_never_deadlock(client, auth):
    """A re-scoring chunk and Bundles for the same patients take the same locks in the same order."""
    from service.jobs import rescore_all

    pid, _ = _red_patient(client, auth)
    integration = auth("integration")

    def ingest(n: int) -> int:
        obs = observation(pid, "heart_rate", 80 + n, NOW - timedelta(minutes=n), f"rs-{n}")
        return post_fhir(client, "/fhir/Observation", obs, integration).status_code

    with ThreadPoolExecutor(4) as pool:
        rescoring = [pool.submit(rescore_all, client.app, 1) for _ in range(2)]
        statuses = list(pool.map(ingest, range(12)))
        counts = [f.result() for f in rescoring]
    assert set(statuses) <= {200, 201} and all(c >= 0 for c in counts)
