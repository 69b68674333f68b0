"""Two real replicas (`triage serve`, uvicorn) on one PostgreSQL database, under contention and
failure: concurrent enrolments of the same people, every Bundle sent to both replicas at once,
clinicians acting while data arrives, and `kill -9` of one replica mid-stream, then a restart.

Afterwards: every Observation answered 2xx is stored exactly once, there were no 5xx, each
patient has at most one active item, `triage audit verify` passes, each outbox entry reached
the local FHIR receiver exactly once (a redelivery after the kill is counted, and the
receiver's conditional updates make it harmless), and no log line holds a national identity
number. Bounded: a fixed number of requests, every wait with a deadline.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import POSTGRES_URL
from tests.helpers import ORG, observation
from tests.replica_cluster import ReplicaSet, free_port, postgres_schema

pytestmark = pytest.mark.postgres

N_PATIENTS = 12
PATIENTS_PER_BUNDLE = 3
DAYS = 8  # one SpO2 and one pulse per patient and day; low SpO2 mid-way and last: items open
IN_FLIGHT = 4
ELEVEN_DIGITS = re.compile(r"(?<!\d)\d{11}(?!\d)")
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def person_numbers(n: int) -> list[tuple[str, date]]:
    from models.identifiers import person_number_for

    out: list[tuple[str, date]] = []
    individual = 100
    while len(out) < n:
        birth = date(1950 + len(out), 3, 10)
        number = person_number_for(birth, individual, synthetic_month=False)
        individual += 1
        if number is not None:
            out.append((number, birth))
    return out


@dataclass
class Tally:
    """Every answer the test got, by status; the Observations a 2xx said were stored."""

    statuses: Counter[int] = field(default_factory=Counter)
    cut_off: int = 0  # connection errors (the killed replica): not answers, retried elsewhere
    stored_ok: set[str] = field(default_factory=set)  # message identifiers answered 200/201
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)


def _post(client: httpx.Client, url: str, body: Any, headers: dict[str, str], tally: Tally) -> Any:
    with tally.lock:
        tally.posts += 1
    try:
        response = client.post(url, json=body, headers=headers, timeout=60)
    except httpx.HTTPError:
        with tally.lock:
            tally.cut_off += 1
        return None
    tally.record(response)
    return response


def _bundles(patients: list[str], rng: random.Random) -> list[dict[str, Any]]:
    """Batch Bundles, each about PATIENTS_PER_BUNDLE patients listed in a random order (so two
    Bundles name the same patients in opposite orders: the deadlock the locks prevent)."""
    bundles = []
    groups = [patients[i : i + PATIENTS_PER_BUNDLE] for i in range(0, len(patients), 2)]
    for day in range(DAYS, -1, -1):
        when = NOW - timedelta(days=day)
        for g, group in enumerate(groups):
            group = [*group]
            rng.shuffle(group)
            entries = []
            for pid in group:
                spo2 = 84 if day in (0, DAYS // 2) else 96  # items open mid-stream too
                key = f"{pid[:8]}-d{day}-g{g}"
                entries.append(observation(pid, "spo2", spo2, when, f"{key}-s"))
                entries.append(observation(pid, "heart_rate", 72 + day, when, f"{key}-h"))
            bundles.append(
                {
                    "resourceType": "Bundle",
                    "type": "batch",
                    "entry": [{"resource": e} for e in entries],
                }
            )
    return bundles


def _record_bundle_answer(response: Any, bundle: dict[str, Any], tally: Tally) -> None:
    if response is None or response.status_code != 200:
        return
    for entry, sent in zip(response.json()["entry"], bundle["entry"], strict=True):
        if entry["response"]["status"].split()[0] in ("200", "201"):
            with tally.lock:
                tally.stored_ok.add(sent["resource"]["identifier"][0]["value"])


@pytest.mark.skipif(not POSTGRES_URL, reason="needs TRIAGE_TEST_DATABASE_URL (PostgreSQL)")
def test_two_replicas_under_contention_and_a_kill_lose_and_double_nothing(
    tmp_path: Path, artifact_dir: Path
) -> None:
    from sqlalchemy import create_engine, func, select

    from service.db.tables import IngestedResource, OutboxEntry, Reading, WorklistItem
    from service.domain.worklist import ACTIVE_STATES
    from service.security.principal import Role
    from service.security.tokens import issue_dev_token
    from tests.helpers import migrate_test_database
    from tests.service.interop.fhir_receiver import FhirReceiver

    assert POSTGRES_URL
    rng = random.Random(14)
    receiver = FhirReceiver(free_port())
    receiver.start()
    with (
        postgres_schema(POSTGRES_URL) as url,
        ReplicaSet(
            url,
            tmp_path,
            artifact_dir,
            extra_env={"TRIAGE_OUTBOX_ENDPOINT": receiver.base_url, "TRIAGE_OUTBOX_POLL_S": "0.2"},
        ) as cluster,
    ):
        migrate_test_database(url)  # once, before the replicas start
        settings = cluster.settings()
        integration = {
            "Authorization": "Bearer " + issue_dev_token(settings, Role.INTEGRATION)  # type: ignore[arg-type]
        }
        clinicians = [
            {
                "Authorization": "Bearer "
                + issue_dev_token(settings, Role.CLINICIAN, subject=f"hpr-90000{n}")  # type: ignore[arg-type]
            }
            for n in range(2)
        ]
        a, b = cluster.add(2)
        cluster.start(a)
        cluster.start(b)
        tally = Tally()
        client = httpx.Client(limits=httpx.Limits(max_connections=32))

        # 1. Every person enrolled through both replicas at once: one 201, one 200, one id.
        people = person_numbers(N_PATIENTS)

        def enrol_twice(person: tuple[str, date]) -> list[str]:
            fnr, birth = person
            body = {
                "identifier": fnr,
                "birth_date": birth.isoformat(),
                "sex": "female",
                "pathway": "copd",
                "organisation": ORG,
                "unit": "lungs",
            }
            with ThreadPoolExecutor(2) as pair:
                answers = list(
                    pair.map(
                        lambda r: _post(
                            client, f"{r.base_url}/api/v1/patients", body, integration, tally
                        ),
                        (a, b),
                    )
                )
            assert sorted(r.status_code for r in answers) == [200, 201], [r.text for r in answers]
            return [r.json()["id"] for r in answers]

        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            enrolled = list(pool.map(enrol_twice, people))
        assert all(len(set(ids)) == 1 for ids in enrolled)
        patients = [ids[0] for ids in enrolled]

        # 2. Every Bundle to both replicas at once, IN_FLIGHT at a time; clinicians act on
        #    the worklist meanwhile; replica b is killed half-way and restarted.
        bundles = _bundles(patients, rng)
        half = len(bundles) // 2
        done = threading.Event()
        clinician_statuses: Counter[int] = Counter()

        def send_both(bundle: dict[str, Any]) -> None:
            targets = [r for r in (a, b) if r.alive()] or [a]
            with ThreadPoolExecutor(len(targets)) as pair:
                answers = list(
                    pair.map(
                        lambda r: _post(client, f"{r.base_url}/fhir", bundle, integration, tally),
                        targets,
                    )
                )
            for answer in answers:
                _record_bundle_answer(answer, bundle, tally)
            if all(x is None for x in answers):  # a sender retries what got no answer
                _record_bundle_answer(
                    _post(client, f"{a.base_url}/fhir", bundle, integration, tally), bundle, tally
                )

        def clinician_work() -> None:
            rounds = 0
            while not done.is_set() and rounds < 200:
                rounds += 1
                replica = a if rounds % 2 or not b.alive() else b
                headers = clinicians[rounds % 2]
                try:
                    items = client.get(
                        f"{replica.base_url}/api/v1/worklist", headers=headers, timeout=30
                    )
                except httpx.HTTPError:
                    continue
                clinician_statuses[items.status_code] += 1
                for item in items.json()[:3] if items.status_code == 200 else []:
                    action = "acknowledge" if item["state"] == "open" else "escalate"
                    try:
                        moved = client.post(
                            f"{replica.base_url}/api/v1/worklist/{item['id']}/{action}",
                            headers={**headers, "If-Match": f'"{item["version"]}"'},
                            json={"recipient": "role:clinician"} if action == "escalate" else None,
                            timeout=30,
                        )
                    except httpx.HTTPError:
                        continue
                    clinician_statuses[moved.status_code] += 1
                time.sleep(0.05)

        clinician = threading.Thread(target=clinician_work)
        clinician.start()
        try:
            with ThreadPoolExecutor(IN_FLIGHT) as pool:
                list(pool.map(send_both, bundles[:half]))
                # kill -9 while Bundles are in flight on it
                inflight = [pool.submit(send_both, bundle) for bundle in bundles[half : half + 4]]
                time.sleep(0.3)
                cluster.kill_9(b)
                for future in inflight:
                    future.result()
                cluster.start(b)  # restart: the same database, nothing to repair by hand
                list(pool.map(send_both, bundles[half + 4 :]))
        finally:
            done.set()
            clinician.join(60)

        # 3. The outbox drains: each entry delivered once (bounded wait).
        engine = create_engine(url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                pending = conn.scalar(
                    select(func.count())
                    .select_from(OutboxEntry)
                    .where(OutboxEntry.state != "delivered")
                )
            if pending == 0:
                break
            time.sleep(0.5)
        with engine.connect() as conn:
            outbox_entries = conn.scalar(select(func.count()).select_from(OutboxEntry))
            undelivered = conn.scalar(
                select(func.count())
                .select_from(OutboxEntry)
                .where(OutboxEntry.state != "delivered")
            )
            keys = Counter(conn.scalars(select(IngestedResource.idempotency_key)).all())
            per_component = conn.execute(
                select(Reading.resource_id, Reading.name, func.count())
                .group_by(Reading.resource_id, Reading.name)
                .having(func.count() > 1)
            ).all()
            active_per_patient = conn.execute(
                select(WorklistItem.patient_id, func.count())
                .where(WorklistItem.state.in_(ACTIVE_STATES))
                .group_by(WorklistItem.patient_id)
                .having(func.count() > 1)
            ).all()
        engine.dispose()
        client.close()
        cluster.stop_all()  # flush the audit writers before verifying the chain
        verify = subprocess.run(
            [sys.executable, "-c", "from service.cli import main; main()", "audit", "verify"],
            env=cluster.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        receiver.stop()

    stored_keys = {k.rsplit("|", 1)[-1] for k in keys}
    sent = {e["resource"]["identifier"][0]["value"] for bundle in bundles for e in bundle["entry"]}
    counts = {
        "posts": tally.posts,
        "2xx": sum(n for s, n in tally.statuses.items() if 200 <= s < 300),
        "4xx": sum(n for s, n in tally.statuses.items() if 400 <= s < 500),
        "5xx": tally.server_errors,
        "cut off by kill -9": tally.cut_off,
        "observations sent": len(sent),
        "observations answered 2xx": len(tally.stored_ok),
        "stored": len(keys),
        "clinician answers": dict(clinician_statuses),
        "outbox entries": outbox_entries,
        "delivered (first arrivals)": len(receiver.arrivals),
        "redelivered": receiver.redeliveries,
    }
    print("replica test counts:", json.dumps(counts))
    assert tally.server_errors == 0, tally.statuses
    assert not any(s >= 500 for s in clinician_statuses), clinician_statuses
    assert tally.stored_ok and tally.stored_ok <= stored_keys  # nothing answered 2xx is lost
    assert all(n == 1 for n in keys.values()) and not per_component  # nothing doubled
    assert stored_keys == sent  # every Observation sent got stored (retried after the kill)
    assert not active_per_patient
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert undelivered == 0 and outbox_entries
    assert len(receiver.arrivals) == outbox_entries  # each entry arrived, none twice as new
    assert len({x.bundle_id for x in receiver.arrivals}) == outbox_entries
    assert not receiver.errors
    output = cluster.logs() + verify.stdout + verify.stderr
    assert not ELEVEN_DIGITS.search(output), ELEVEN_DIGITS.search(output)
