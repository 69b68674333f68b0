"""The audit log: one row per patient per request (refusals too), hash-chained and verifiable."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from service.db.engine import make_engine, make_session_factory
from service.db.tables import AuditEntry
from service.security.audit import (
    AuditEvent,
    AuditWriter,
    append_events,
    build_events,
    request_patient_ids,
    safe_patient_id,
    verify_chain,
)
from service.security.principal import Principal, Role
from service.security.record_guards import RecordImmutable
from tests.helpers import FNR_ADULT, ORG, enrol, observation, post_fhir
from tests.helpers import migrate_test_database as migrate
from tests.service.security.conftest import flush_audit, make_fnr


def drop_append_only_triggers(engine: Any) -> None:
    """What an administrator with DDL rights could do; the hash chain must still tell."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log"))
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))


def _rows(client: Any, **where: Any) -> list[AuditEntry]:
    flush_audit(client)
    with Session(client.app.state.engine) as session:
        query = select(AuditEntry).order_by(AuditEntry.seq)
        for key, value in where.items():
            query = query.where(getattr(AuditEntry, key) == value)
        return list(session.scalars(query))


def _verify(client: Any) -> Any:
    flush_audit(client)
    with Session(client.app.state.engine) as session:
        return verify_chain(session)


@pytest.fixture
def patient(client: Any, auth: Any) -> dict[str, Any]:
    integration = auth("integration")
    p = enrol(client, integration)
    r = post_fhir(
        client,
        "/fhir/Observation",
        observation(p["id"], "spo2", 86, datetime.now(UTC), "audit-1"),
        integration,
    )
    assert r.status_code == 201, r.text
    return p


def test_reads_and_writes_are_audited_with_who_what_why(
    client: Any, auth: Any, patient: dict[str, Any]
) -> None:
    pid = patient["id"]
    nurse = auth("clinician", subject="565501872")
    assert client.get(f"/api/v1/patients/{pid}", headers=nurse).status_code == 200
    rows = _rows(client, patient_id=pid)
    enrolled, ingested, read = rows[0], rows[1], rows[-1]
    assert (enrolled.action, enrolled.resource, enrolled.outcome) == (
        "write",
        "POST /api/v1/patients",
        201,
    )
    assert (ingested.action, ingested.resource, ingested.role) == (
        "write",
        "POST /fhir/Observation",
        "integration",
    )
    assert (read.actor, read.role, read.organisation, read.action, read.purpose, read.outcome) == (
        "565501872",
        "clinician",
        ORG,
        "read",
        "treatment",
        200,
    )
    assert read.resource == "GET /api/v1/patients/{patient_id}"
    assert read.at is not None


def test_refusals_are_audited(client: Any, auth: Any, patient: dict[str, Any]) -> None:
    pid = patient["id"]
    assert client.get(f"/api/v1/patients/{pid}").status_code == 401
    assert client.get(f"/api/v1/patients/{pid}", headers=auth("ml-engineer")).status_code == 403
    refused = _rows(client, patient_id=pid, action="refuse")
    assert [(r.actor, r.outcome) for r in refused] == [("anonymous", 401), ("dev-ml-engineer", 403)]


def test_patients_found_while_serving_are_audited(
    client: Any, auth: Any, patient: dict[str, Any]
) -> None:
    """Patients that a list or a bundle touches (not named in the URL) get their rows too."""
    other = enrol(
        client, auth("integration"), make_fnr(date(1990, 1, 1), 100), birth_date="1990-01-01"
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": observation(other["id"], "heart_rate", 131, datetime.now(UTC), "b-1"),
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    assert post_fhir(client, "/fhir", bundle, auth("integration")).status_code == 200
    assert any(r.resource == "POST /fhir" for r in _rows(client, patient_id=other["id"]))
    assert client.get("/api/v1/worklist", headers=auth("clinician")).status_code == 200
    worklist_rows = [r for r in _rows(client) if r.resource == "GET /api/v1/worklist"]
    assert {r.patient_id for r in worklist_rows} == {patient["id"], other["id"]}
    assert (
        client.get(
            f"/fhir/RiskAssessment?subject=Patient/{patient['id']}", headers=auth("clinician")
        ).status_code
        == 200
    )
    assert _rows(client)[-1].patient_id == patient["id"]


def test_requests_touching_no_patient_get_one_row(client: Any, auth: Any) -> None:
    assert client.get("/api/v1/models", headers=auth("ml-engineer")).status_code == 200
    row = _rows(client)[-1]
    assert (row.resource, row.patient_id, row.purpose) == (
        "GET /api/v1/models",
        None,
        "quality-assurance",
    )


def test_public_probes_are_not_audited(client: Any) -> None:
    for path in ("/healthz", "/metrics", "/openapi.json", "/no/such/path"):
        client.get(path)
    assert _rows(client) == []


def test_identifier_in_the_url_is_never_stored(client: Any, auth: Any) -> None:
    client.get(f"/api/v1/patients/{FNR_ADULT}", headers=auth("clinician"))
    client.get(f"/fhir/Task?patient=Patient/{FNR_ADULT}", headers=auth("clinician"))
    assert all(r.patient_id is None for r in _rows(client))
    assert safe_patient_id(FNR_ADULT) is None
    assert safe_patient_id("Patient/" + "a" * 37) is None
    assert safe_patient_id("Patient/3f1c-ab") == "3f1c-ab"


def test_request_patient_ids_sources() -> None:
    ids = request_patient_ids(
        {"patient_id": "p1"},
        {"subject": ["Patient/p2"], "patient": ["p3"]},
        {"audit_patient_ids": ["p4", FNR_ADULT]},
    )
    assert ids == {"p1", "p2", "p3", "p4"}


def test_build_events_actions_and_guardian_purpose() -> None:
    guardian = Principal("helsenorge", Role.INTEGRATION, ORG, None, guardian_proxy=True)
    (write,) = build_events(
        method="POST",
        route_path="/x",
        status=201,
        principal=guardian,
        patient_ids=set(),
        purpose=None,
    )
    assert (write.action, write.purpose, write.patient_id) == (
        "write",
        "treatment-integration:guardian-proxy",
        None,
    )
    refused = build_events(
        method="GET",
        route_path="/x",
        status=403,
        principal=None,
        patient_ids={"b", "a"},
        purpose=None,
    )
    assert [(e.action, e.patient_id, e.actor) for e in refused] == [
        ("refuse", "a", "anonymous"),
        ("refuse", "b", "anonymous"),
    ]


# ---- the chain -------------------------------------------------------------------------------


def _event(i: int, patient: str | None = "p") -> AuditEvent:
    return AuditEvent(
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
        f"u{i % 3}",
        "clinician",
        ORG,
        patient,
        "read",
        "GET /x",
        "treatment",
        200,
    )


@pytest.fixture
def chain(any_database_url: str) -> Any:
    migrate(any_database_url)
    engine = make_engine(any_database_url)
    append_events(engine, [_event(i) for i in range(10)])
    yield engine
    engine.dispose()


def test_database_refuses_plain_sql_changes(chain: Any) -> None:
    from sqlalchemy.exc import DBAPIError

    for statement in (
        "UPDATE audit_log SET actor = 'x' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
    ):
        with pytest.raises(DBAPIError, match="append-only"), chain.begin() as conn:
            conn.execute(text(statement))
    assert _check(chain).ok


def _check(engine: Any, expected_head: str | None = None) -> Any:
    with make_session_factory(engine)() as session:
        return verify_chain(session, expected_head)


def test_intact_chain_verifies(chain: Any) -> None:
    result = _check(chain)
    assert result.ok and result.rows_checked == 10 and result.head_seq == 10


def test_edited_row_is_named(chain: Any) -> None:
    drop_append_only_triggers(chain)
    with chain.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 4"))
    result = _check(chain)
    assert not result.ok and result.bad_seq == 4
    assert "edited" in (result.problem or "")


def test_edited_row_with_recomputed_hash_is_caught_at_the_next_row(chain: Any) -> None:
    drop_append_only_triggers(chain)
    with chain.begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET outcome = 403, hash = :h WHERE seq = 6"), {"h": "f" * 64}
        )
    result = _check(chain)
    assert not result.ok and result.bad_seq in (6, 7)


def test_deleted_row_is_named(chain: Any) -> None:
    drop_append_only_triggers(chain)
    with chain.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 5"))
    result = _check(chain)
    assert not result.ok and result.bad_seq == 6
    assert "5..5 are missing" in (result.problem or "")


def test_deleted_newest_rows_need_a_recorded_head(chain: Any) -> None:
    head = _check(chain).head_hash
    drop_append_only_triggers(chain)
    with chain.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 9"))
    assert _check(chain).ok  # a shorter chain is still a chain ...
    result = _check(chain, expected_head=head)  # ... but not the one recorded earlier
    assert not result.ok and "head hash" in (result.problem or "")


def test_orm_cannot_update_or_delete_audit_rows(chain: Any) -> None:
    from service.security.record_guards import install_record_guards

    install_record_guards()
    with make_session_factory(chain)() as session:
        row = session.scalars(select(AuditEntry).limit(1)).one()
        row.outcome = 500
        with pytest.raises(RecordImmutable):
            session.flush()
        session.rollback()
        session.delete(session.scalars(select(AuditEntry).limit(1)).one())
        with pytest.raises(RecordImmutable):
            session.flush()


def test_concurrent_writers_keep_one_chain(any_database_url: str) -> None:
    """Two writers (as two replicas would) interleave; the chain stays linear and complete."""
    migrate(any_database_url)
    engines = [make_engine(any_database_url) for _ in range(2)]
    errors: list[BaseException] = []

    def write(engine: Any, offset: int) -> None:
        try:
            for i in range(15):
                append_events(engine, [_event(offset + i * 2 + j) for j in range(2)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(e, k * 1000)) for k, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    result = _check(engines[0])
    assert result.ok and result.rows_checked == 60, result.describe()
    for e in engines:
        e.dispose()


def test_background_writer_batches_and_flushes(database_url: str) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    writer = AuditWriter(engine, batch_size=7, interval_s=0.01)
    writer.start()
    for i in range(50):
        writer.submit([_event(i)])
    assert writer.flush() and writer.backlog == 0
    writer.submit([_event(99)])
    writer.stop()  # drains what is left
    assert _check(engine).rows_checked == 51
    engine.dispose()


def test_writer_retries_after_a_database_failure(database_url: str) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log RENAME TO audit_log_away"))
    writer = AuditWriter(engine, interval_s=0.01)
    writer.start()
    writer.submit([_event(1)])
    assert not writer.flush(timeout_s=0.3)  # cannot write yet; the event is kept, not dropped
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log_away RENAME TO audit_log"))
    assert writer.flush(timeout_s=10) and writer.failures >= 1
    writer.stop()
    assert _check(engine).rows_checked == 1
    engine.dispose()


def test_shutdown_drains_the_queue(app: Any, auth: Any, settings: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        for _ in range(20):
            c.get("/api/v1/models", headers=auth("ml-engineer"))
    engine = create_engine(settings.resolved_database_url)
    with Session(engine) as session:
        assert verify_chain(session).rows_checked == 20
    engine.dispose()


def test_cli_verify_detects_an_edited_row(database_url: str) -> None:
    from service.security.cli import app as cli

    migrate(database_url)
    engine = make_engine(database_url)
    append_events(engine, [_event(i) for i in range(5)])
    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "verify", "--database-url", database_url])
    assert ok.exit_code == 0 and "intact: 5 rows" in ok.output
    drop_append_only_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET purpose = 'curiosity' WHERE seq = 3"))
    broken = runner.invoke(cli, ["audit", "verify", "--database-url", database_url])
    assert broken.exit_code == 1 and "seq 3" in broken.output
    engine.dispose()


# ---- the API -------------------------------------------------------------------------------


def test_audit_search_filters(client: Any, auth: Any, patient: dict[str, Any]) -> None:
    pid = patient["id"]
    client.get(f"/api/v1/patients/{pid}", headers=auth("clinician", subject="111"))
    client.get(f"/api/v1/patients/{pid}", headers=auth("clinician", subject="222"))
    compliance = auth("compliance")
    flush_audit(client)
    by_user = client.get("/api/v1/audit", params={"user": "222"}, headers=compliance).json()
    assert by_user["total"] == 1 and by_user["entries"][0]["patient_id"] == pid
    by_patient = client.get("/api/v1/audit", params={"patient": pid}, headers=compliance).json()
    assert by_patient["total"] >= 4
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (
        client.get("/api/v1/audit", params={"from": future}, headers=compliance).json()["total"]
        == 0
    )
    writes = client.get("/api/v1/audit", params={"action": "write"}, headers=compliance).json()
    assert {e["action"] for e in writes["entries"]} == {"write"}
    bad = client.get("/api/v1/audit", params={"patient": FNR_ADULT}, headers=compliance)
    assert bad.status_code == 422 and FNR_ADULT not in bad.text
    assert client.get("/api/v1/audit", headers=auth("clinician")).status_code == 403


def test_who_has_looked_at_my_record(client: Any, auth: Any, patient: dict[str, Any]) -> None:
    pid = patient["id"]
    client.get(f"/api/v1/patients/{pid}", headers=auth("clinician", subject="565501872"))
    client.get(f"/api/v1/patients/{pid}", headers=auth("ml-engineer"))  # refused
    report = client.get(
        "/api/v1/audit/access-report", params={"patient": pid}, headers=auth("compliance")
    )
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["patient_id"] == pid and body["refused_attempts"] == 1
    who = [(a["who"], a["role"], a["what"]) for a in body["accesses"]]
    assert ("565501872", "clinician", "GET /api/v1/patients/{patient_id}") in who
    assert all(a["who"] != "dev-ml-engineer" for a in body["accesses"])


def test_verify_endpoint(client: Any, auth: Any, patient: dict[str, Any]) -> None:
    ok = client.get("/api/v1/audit/verify", headers=auth("compliance")).json()
    assert ok["ok"] and ok["rows_checked"] >= 2
    drop_append_only_triggers(client.app.state.engine)
    with client.app.state.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'x' WHERE seq = 1"))
    broken = client.get("/api/v1/audit/verify", headers=auth("compliance")).json()
    assert not broken["ok"] and broken["bad_seq"] == 1


def test_refreshing_a_patient_row_is_noted_not_an_error(
    client: Any, auth: Any, patient: dict[str, Any]
) -> None:
    from service.db.tables import Patient
    from service.security.audit import AuditContext, _current

    ctx = AuditContext()
    token = _current.set(ctx)
    try:
        with Session(client.app.state.engine) as session:
            row = session.get(Patient, patient["id"])
            assert row is not None
            session.refresh(row)
            session.expire(row)
            assert row.unit == "lungs"  # reloaded after expiry
    finally:
        _current.reset(token)
    assert ctx.patient_ids == {patient["id"]}


def test_audit_backlog_and_failures_are_on_metrics(client: Any, auth: Any) -> None:
    client.get("/api/v1/models", headers=auth("ml-engineer"))
    flush_audit(client)
    text_ = client.get("/metrics").text
    assert "triage_audit_backlog_events 0.0" in text_
    assert "triage_audit_write_failures 0.0" in text_
