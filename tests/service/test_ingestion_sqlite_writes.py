"""SQLite write transactions in ingestion: a batch Bundle survives another writer's commit.

Found by bench/bench_scoring.py: a batch's savepoints began as read transactions, and when the
audit writer committed between an entry's lookup and its insert SQLite refused the upgrade to
writer at once ("database is locked", no busy wait), so the whole Bundle answered 500.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from service.db.tables import IngestedResource
from service.domain.ingestion import IngestionService
from tests.helpers import enrol, observation, post_fhir

NOW = datetime.now(UTC).replace(microsecond=0)


def test_batch_entries_survive_a_commit_by_another_connection(client, auth, settings, monkeypatch):
    patient = enrol(client, auth("clinician"))
    db_path = settings.resolved_database_url.split("///", 1)[1]
    with sqlite3.connect(db_path) as setup:
        setup.execute("CREATE TABLE other_writer (x INTEGER)")
    other_done = threading.Event()

    def other_writer() -> None:
        conn = sqlite3.connect(db_path, timeout=30)
        conn.execute("INSERT INTO other_writer VALUES (1)")
        conn.commit()
        conn.close()
        other_done.set()

    original = IngestionService._resolve_patient
    calls = []

    def resolve_then_let_another_writer_commit(self, session, principal, parsed, loc):
        calls.append(loc)
        if len(calls) == 2:  # between entry 2's idempotency lookup and its insert
            writer = threading.Thread(target=other_writer)
            writer.start()
            writer.join(timeout=1.0)  # with the write lock held it waits for our commit
        return original(self, session, principal, parsed, loc)

    monkeypatch.setattr(
        IngestionService, "_resolve_patient", resolve_then_let_another_writer_commit
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": observation(
                    patient["id"], "spo2", 94 - i, NOW - timedelta(minutes=i), f"w-{i}"
                ),
                "request": {"method": "POST", "url": "Observation"},
            }
            for i in range(3)
        ],
    }
    response = post_fhir(client, "/fhir", bundle, auth("integration"))
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201 Created"] * 3
    assert other_done.wait(10), "the other writer never got its turn"
    with client.app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(IngestedResource)) == 3


def test_concurrent_single_observations_all_stored(client, auth):
    patient = enrol(client, auth("clinician"))
    headers = auth("integration")
    statuses: list[int] = []

    def send(i: int) -> None:
        obs = observation(patient["id"], "heart_rate", 70 + i, NOW - timedelta(minutes=i), f"c-{i}")
        statuses.append(post_fhir(client, "/fhir/Observation", obs, headers).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [201] * 8
