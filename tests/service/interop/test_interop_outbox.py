"""Push to DIPS through the outbox: written with the assessment, delivered exactly once and in
order per patient to a FHIR receiver that refuses, loses responses and restarts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.db.tables import Assessment, OutboxEntry, Patient, WorklistItem
from service.outbox.bundle import transaction_bundle
from tests.helpers import enrol, post_fhir
from tests.service.interop.conftest import FNRS, NOW, _birth_date, free_port, history, send_spo2
from tests.service.interop.fhir_receiver import FhirReceiver


def make_app(make_settings, database_url: str, **overrides: Any) -> Any:
    from service.app import create_app
    from tests.helpers import migrate_test_database as migrate

    settings = make_settings(database_url=database_url, **overrides)
    migrate(settings.resolved_database_url)
    return create_app(settings)


def entries(client: TestClient) -> list[OutboxEntry]:
    with client.app.state.sessions() as s:
        return list(s.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))


def wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


BASE = NOW - timedelta(hours=6)  # later readings come in after this, still in the past


def enrol_with_history(client, auth, i: int, last_spo2: float) -> str:
    pid = enrol(client, auth("clinician"), identifier=FNRS[i], birth_date=_birth_date(FNRS[i]))[
        "id"
    ]
    response = post_fhir(
        client, "/fhir", history(pid, last_spo2, f"o{i}", last_at=BASE), auth("integration")
    )
    assert response.status_code == 200
    return pid


def item_of(client, pid: str) -> WorklistItem:
    with client.app.state.sessions() as s:
        return s.scalars(
            select(WorklistItem)
            .where(WorklistItem.patient_id == pid)
            .order_by(WorklistItem.opened_at.desc())
        ).first()


def test_every_item_event_arrives_exactly_once_in_order_despite_failures_and_a_restart(
    make_settings, any_database_url, auth
):
    # Refuse the first three requests, and store-then-lose the response of the fifth.
    receiver = FhirReceiver(free_port(), fail_first=3, lose_response_of={5})
    receiver.start()
    try:
        app = make_app(
            make_settings, any_database_url, outbox_endpoint=receiver.base_url, outbox_poll_s=0.05
        )
        with TestClient(app) as client:
            integration, clinician = auth("integration"), auth("clinician")
            pids = [enrol_with_history(client, auth, i, last_spo2=85) for i in range(3)]
            send_spo2(client, integration, pids[0], 97, BASE + timedelta(hours=1), "p0-up")
            # Better data alone holds the red; the clinician's acknowledgement lowers it.
            acknowledged = client.post(
                f"/api/v1/worklist/{item_of(client, pids[0]).id}/acknowledge",
                json={"note": "ringt"},
                headers=clinician,
            )
            assert acknowledged.status_code == 200, acknowledged.text
            wait_for(lambda: len(receiver.arrivals) >= 2)

            receiver.stop()  # DIPS goes down mid-stream ...
            send_spo2(client, integration, pids[0], 84, BASE + timedelta(hours=2), "p0-down")
            item = item_of(client, pids[2])
            response = client.post(
                f"/api/v1/worklist/{item.id}/resolve",
                json={"note": "ringt opp, stabil"},
                headers=clinician,
            )
            assert response.status_code == 200, response.text
            send_spo2(client, integration, pids[1], 97, BASE + timedelta(hours=1), "p1-up")
            time.sleep(0.5)  # ... while the sender keeps trying
            receiver.start()  # ... and comes back on the same port

            wait_for(lambda: all(e.state == "delivered" for e in entries(client)))
            outbox = entries(client)
            state = client.get("/api/v1/outbox", headers=auth("admin")).json()
            metrics = client.get("/metrics").text
    finally:
        receiver.stop()

    assert receiver.errors == []
    assert {e.event for e in outbox} >= {"opened", "level-changed", "resolved"}
    assert any(e.attempts > 1 for e in outbox)  # the failures really were retried
    assert receiver.redeliveries >= 1  # the lost response caused a redelivery ...
    # ... which updated what had arrived instead of doubling it: one Task per worklist item.
    assert sorted(s.resource["identifier"][0]["value"] for s in receiver.of_type("Task")) == (
        sorted({e.item_id for e in outbox})
    )
    # Exactly once: every outbox entry's Bundle arrived, none twice.
    sent_ids = [e.payload["identifier"]["value"] for e in outbox]
    assert sorted(a.bundle_id for a in receiver.arrivals) == sorted(sent_ids)
    # In order per patient: arrivals follow the outbox order of that patient's entries.
    with app.state.sessions() as s:
        fnr = dict(s.execute(select(Patient.id, Patient.identifier_value)).all())
    for pid in pids:
        expected = [e.payload["identifier"]["value"] for e in outbox if e.patient_id == pid]
        arrived = [a.bundle_id for a in receiver.arrivals if a.patient == fnr[pid]]
        assert arrived == expected
    # The receiver's final Task state is the item's final state (resolved -> completed).
    tasks = {s.resource["identifier"][0]["value"]: s.resource for s in receiver.of_type("Task")}
    assert tasks[item.id]["status"] == "completed"
    assert state["counts"]["delivered"] == len(outbox) and state["counts"]["pending"] == 0
    assert f'triage_outbox_entries{{state="delivered"}} {float(len(outbox))}' in metrics


def test_without_an_endpoint_the_outbox_only_records(client, auth, patient_with_history):
    patient = patient_with_history(last_spo2=85)
    outbox = entries(client)
    assert [(e.patient_id, e.event, e.state) for e in outbox] == [
        (patient["id"], "opened", "recorded")
    ]
    response = client.get("/api/v1/outbox", headers=auth("integration"))
    assert response.status_code == 200
    body = response.json()
    assert body["endpoint_configured"] is False and body["counts"]["recorded"] == 1
    assert body["entries"][0]["event"] == "opened" and "payload" not in body["entries"][0]
    assert client.get("/api/v1/outbox?state=pending", headers=auth("admin")).json()["entries"] == []
    # The gauge is kept current by the background job even without an endpoint.
    app = client.app
    wait_for(lambda: app.state.metrics.outbox.labels(state="recorded")._value.get() == 1)


def test_outbox_roles(client, auth):
    assert client.get("/api/v1/outbox").status_code == 401
    for role in ("clinician", "ml-engineer", "compliance"):
        assert client.get("/api/v1/outbox", headers=auth(role)).status_code == 403
    assert client.get("/api/v1/outbox", headers=auth("integration")).status_code == 200


def test_a_failed_scoring_transaction_leaves_no_outbox_entry(client, auth, monkeypatch):
    """The entry commits with the assessment or not at all."""
    pid = enrol(client, auth("clinician"), identifier=FNRS[0], birth_date=_birth_date(FNRS[0]))[
        "id"
    ]
    services = client.app.state.services

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(services.scoring.metrics.scorings, "labels", boom)
    with pytest.raises(RuntimeError):
        post_fhir(client, "/fhir", history(pid, 85, "x"), auth("integration"))
    assert entries(client) == []
    with client.app.state.sessions() as s:
        assert s.scalars(select(Assessment)).all() == []


# ---- the Bundle itself -----------------------------------------------------------------------


def test_the_bundle_is_a_valid_fhir_transaction_of_conditional_updates(
    client, auth, patient_with_history
):
    from tests.fhir_r4 import validate_r4

    patient = patient_with_history(last_spo2=85)
    payload = entries(client)[0].payload
    validate_r4(payload)  # raises on anything R4 does not allow
    kinds = [e["resource"]["resourceType"] for e in payload["entry"]]
    assert kinds[0] == "RiskAssessment" and kinds[-1] == "Task"
    for entry in payload["entry"]:
        resource, request = entry["resource"], entry["request"]
        ident = resource["identifier"][0]
        assert request == {
            "method": "PUT",
            "url": f"{resource['resourceType']}?identifier={ident['system']}|{ident['value']}",
        }
        assert "id" not in resource and entry["fullUrl"].startswith("urn:uuid:")
    task, risk = payload["entry"][-1]["resource"], payload["entry"][0]["resource"]
    # DIPS does not know our ids: the patient by fødselsnummer, the risk by the bundle's urn.
    assert task["for"] == {
        "type": "Patient",
        "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNRS[0]},
    }
    assert task["focus"]["reference"] == payload["entry"][0]["fullUrl"]
    assert risk["subject"] == task["for"]
    # Observations by the identifiers VKP gave them.
    assert {
        "type": "Observation",
        "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.7.1", "value": "p0-last"},
    } in risk["basis"]
    assert patient["id"] not in str(payload)  # no internal ids leak into DIPS


def test_fired_rules_travel_as_detected_issues(client, auth, patient_with_history):
    from tests.fhir_r4 import validate_r4

    patient = patient_with_history(last_spo2=85)
    with client.app.state.sessions() as s:
        p = s.get(Patient, patient["id"])
        a = s.scalars(select(Assessment).where(Assessment.patient_id == p.id)).first()
        item = item_of(client, p.id)
        a.explanation = {
            **a.explanation,
            "rules": [
                {
                    "rule": "news2-single-3",
                    "level": "red",
                    "text_nb": "SpO2 ≤ 91 %",
                    "text_en": "SpO2 <= 91 %",
                }
            ],
        }
        payload = transaction_bundle(item, p, a, "opened", [])
    validate_r4(payload)
    issues = [e for e in payload["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]
    assert len(issues) == 1
    issue = issues[0]["resource"]
    codes = {c["system"]: c["code"] for c in issue["code"]["coding"]}
    assert issue["severity"] == "high"
    assert codes["https://triage.example.org/fhir/CodeSystem/rule"] == "news2-single-3"
    # VkpDetectedIssue: the VKP alert code comes first.
    assert (
        issue["code"]["coding"][0]["system"]
        == "http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090"
    )
    assert issue["implicated"] == [{"reference": payload["entry"][0]["fullUrl"]}]
    assert issues[0]["request"]["url"].startswith("DetectedIssue?identifier=")


# ---- several replicas ------------------------------------------------------------------------


def test_two_senders_share_the_work_without_doubling_or_reordering(make_settings, any_database_url):
    """Two replicas' senders on one database (PostgreSQL: SKIP LOCKED; SQLite: conditional
    claims): each entry is delivered once, and each patient's entries in order."""
    from service.db.engine import make_engine, make_session_factory
    from service.observability import Metrics
    from service.outbox.sender import OutboxSender
    from tests.helpers import migrate_test_database as migrate

    migrate(any_database_url)
    engine = make_engine(any_database_url)
    sessions = make_session_factory(engine)
    receiver = FhirReceiver(free_port())
    receiver.start()
    now = datetime.now(UTC)
    with sessions.begin() as s:
        for n in range(24):
            patient = f"patient-{n % 4}"
            s.add(
                OutboxEntry(
                    created_at=now,
                    patient_id=patient,
                    item_id=f"item-{n}",
                    event="opened",
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                    payload=fake_bundle(f"m-{n:02d}", patient, f"item-{n}"),
                )
            )

    async def drain() -> None:
        senders = [
            OutboxSender(sessions, receiver.base_url, Metrics(), poll_s=0.01, batch=3)
            for _ in range(2)
        ]
        try:
            for _ in range(200):
                await asyncio.gather(*(sender.run_once() for sender in senders))
                if len(receiver.arrivals) == 24:
                    return
        finally:
            for sender in senders:
                await sender.aclose()

    try:
        asyncio.run(drain())
    finally:
        receiver.stop()
        engine.dispose()
    assert receiver.redeliveries == 0 and len(receiver.arrivals) == 24
    for p in range(4):
        arrived = [a.bundle_id for a in receiver.arrivals if a.patient == f"patient-{p}"]
        assert arrived == sorted(arrived)  # message ids were written in order


def fake_bundle(message_id: str, patient: str, item: str) -> dict[str, Any]:
    system = "https://triage.example.org/fhir/CodeSystem/worklist-item"
    task = {
        "resourceType": "Task",
        "identifier": [{"system": system, "value": item}],
        "status": "requested",
        "intent": "plan",
        "for": {"identifier": {"system": "urn:x", "value": patient}},
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "identifier": {"system": "urn:msg", "value": message_id},
        "meta": {"tag": [{"code": "opened"}]},
        "entry": [
            {
                "fullUrl": f"urn:uuid:{item}",
                "resource": task,
                "request": {"method": "PUT", "url": f"Task?identifier={system}|{item}"},
            }
        ],
    }


@pytest.mark.parametrize(
    "key, expected_system, expected_value",
    [
        (
            "Observation|urn:oid:2.16.578.1.12.4.1.7.1|vkp-0001",
            "urn:oid:2.16.578.1.12.4.1.7.1",
            "vkp-0001",
        ),
        (
            "QuestionnaireResponse|urn:oid:2.16.578.1.12.4.1.7.2|hn-7|x",
            "urn:oid:2.16.578.1.12.4.1.7.2",
            "hn-7|x",
        ),
        ("Observation|id|abc", None, "received-1"),
        ("Observation|sha256|0f0f", None, "received-1"),
    ],
)
def test_basis_is_referenced_by_the_senders_identifier_from_the_idempotency_key(
    key, expected_system, expected_value
):
    from service.outbox.bundle import RECEIVED_IDENTIFIER_SYSTEM, basis_reference

    ref = basis_reference("received-1", key.split("|")[0], key)
    assert ref["type"] == key.split("|")[0]
    assert ref["identifier"] == {
        "system": expected_system or RECEIVED_IDENTIFIER_SYSTEM,
        "value": expected_value,
    }
