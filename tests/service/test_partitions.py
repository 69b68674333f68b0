"""Monthly partitions on PostgreSQL (migration 0014, service/db/partitions.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from service.db import partitions
from tests.conftest import POSTGRES_URL, _admin

pytestmark = pytest.mark.postgres

PREVIOUS = "0006_org_boundaries"  # the revision before 0014
PARTITIONED = ("readings", "assessments", "audit_log")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A schema of its own on the test server (the pattern of tests/conftest.py)."""
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not configured: set TRIAGE_TEST_DATABASE_URL")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    _admin(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        _admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _alembic(url: str, action: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from service.db.engine import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    getattr(command, action)(config, revision)


def _epoch(year: int, month: int, day: int = 15) -> int:
    return int(datetime(year, month, day, 12, tzinfo=UTC).timestamp())


def _patient(conn: Connection, patient_id: str = "p1") -> None:
    conn.execute(
        text(
            "INSERT INTO patients (id, identifier_system, identifier_value, birth_date, sex, "
            "pathway_id, organisation, unit, confidential_to_guardians, pathway_options, "
            "created_at, created_by) VALUES (:id, 's', :id, '1950-01-01', 'female', 'copd', "
            "'974795787', 'lungs', false, '{}', now(), 'test')"
        ),
        {"id": patient_id},
    )


def _resource(conn: Connection, resource_id: str, patient_id: str = "p1") -> None:
    conn.execute(
        text(
            "INSERT INTO ingested_resources (id, resource_type, idempotency_key, content_hash, "
            "patient_id, body, received_at, received_by) VALUES (:id, 'Observation', :id, 'h', "
            ":patient, '{}', now(), 'test')"
        ),
        {"id": resource_id, "patient": patient_id},
    )


def _reading(conn: Connection, resource_id: str, name: str, effective_s: int) -> int:
    return int(
        conn.execute(
            text(
                "INSERT INTO readings (patient_id, resource_id, name, value, effective_s) "
                "VALUES ('p1', :r, :n, 95, :e) RETURNING id"
            ),
            {"r": resource_id, "n": name, "e": effective_s},
        ).scalar_one()
    )


def _assessment(conn: Connection, assessment_id: str, created_at: datetime) -> None:
    conn.execute(
        text(
            "INSERT INTO assessments (id, patient_id, created_at, as_of, trigger, pathway_id, "
            "pathway_version, rule_set_hash, features, level, explanation, basis, organisation) "
            "VALUES (:id, 'p1', :at, :at, 'ingestion', 'copd', 1, 'sha256:x', '[]', 'green', "
            "'{}', '[]', '974795787')"
        ),
        {"id": assessment_id, "at": created_at},
    )


def _audit(conn: Connection, seq: int, at: datetime) -> None:
    conn.execute(
        text(
            "INSERT INTO audit_log (seq, at, actor, role, action, resource, purpose, outcome, "
            "prev_hash, hash) VALUES (:seq, :at, 'u', 'clinician', 'read', '/x', 'care', 200, "
            "'a', 'b')"
        ),
        {"seq": seq, "at": at},
    )


def _worklist_item(conn: Connection, assessment_id: str) -> None:
    conn.execute(
        text(
            "INSERT INTO worklist_items (id, patient_id, organisation, unit, state, level, "
            "level_rank, assessment_id, opened_at, updated_at, last_data_at, version) VALUES "
            "(:id, 'p1', '974795787', 'lungs', 'resolved', 'green', 3, :a, now(), now(), now(), 1)"
        ),
        {"id": str(uuid.uuid4()), "a": assessment_id},
    )


def _where(conn: Connection, table: str, condition: str, **params: Any) -> str:
    return str(
        conn.execute(
            text(f"SELECT tableoid::regclass::text FROM {table} WHERE {condition}"), params
        ).scalar_one()
    )


def _relkind(conn: Connection, table: str) -> str:
    return str(
        conn.execute(
            text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
        ).scalar_one()
    )


def _engine(url: str) -> Engine:
    return create_engine(url)


def test_migration_partitions_existing_rows_and_downgrade_restores_them(pg_url: str) -> None:
    _alembic(pg_url, "upgrade", PREVIOUS)
    engine = _engine(pg_url)
    march, april = datetime(2025, 3, 10, tzinfo=UTC), datetime(2025, 4, 20, tzinfo=UTC)
    with engine.begin() as conn:
        _patient(conn)
        _resource(conn, "r1")
        _resource(conn, "r2")
        old_ids = [
            _reading(conn, "r1", "spo2", _epoch(2025, 3)),
            _reading(conn, "r1", "pulse", _epoch(2025, 3)),
            _reading(conn, "r2", "spo2", _epoch(2025, 4)),
        ]
        _assessment(conn, "a-march", march)
        _assessment(conn, "a-april", april)
        _worklist_item(conn, "a-march")
        _audit(conn, 1, march)
        _audit(conn, 2, april)

    _alembic(pg_url, "upgrade", "head")
    with engine.begin() as conn:
        for table in PARTITIONED:
            assert _relkind(conn, table) == "p"
            assert f"{table}_default" in partitions.partitions(conn, table)
        assert _where(conn, "readings", "resource_id = 'r1' AND name = 'spo2'") == (
            "readings_y2025m03"
        )
        assert _where(conn, "readings", "resource_id = 'r2'") == "readings_y2025m04"
        assert _where(conn, "assessments", "id = 'a-april'") == "assessments_y2025m04"
        assert _where(conn, "audit_log", "seq = 1") == "audit_log_y2025m03"
        # The sequence carried over: a new reading does not reuse an old id.
        new_id = _reading(conn, "r2", "pulse", _epoch(2025, 4))
        assert new_id > max(old_ids)
    # One reading per resource component still holds.
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _reading(conn, "r1", "spo2", _epoch(2025, 3))
    # A worklist item must still name a stored assessment (a trigger now, not a foreign key).
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _worklist_item(conn, "no-such-assessment")
    # The audit log stays append-only, on the parent and on a partition itself.
    for statement in (
        "UPDATE audit_log SET actor = 'x' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 2",
        "TRUNCATE audit_log",
        "TRUNCATE audit_log_y2025m03",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))

    _alembic(pg_url, "downgrade", PREVIOUS)
    with engine.begin() as conn:
        for table in PARTITIONED:
            assert _relkind(conn, table) == "r"
        assert conn.execute(text("SELECT count(*) FROM readings")).scalar_one() == 4
        assert conn.execute(text("SELECT count(*) FROM assessments")).scalar_one() == 2
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 2
        assert _reading(conn, "r2", "temperature", _epoch(2025, 4)) > new_id
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _worklist_item(conn, "no-such-assessment")  # the foreign key is back
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _reading(conn, "r1", "spo2", _epoch(2025, 5))  # unique on (resource_id, name) again
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
    _alembic(pg_url, "upgrade", "head")  # and up again
    engine.dispose()


def test_inserts_across_months_land_in_their_partitions(pg_url: str) -> None:
    _alembic(pg_url, "upgrade", "head")
    engine = _engine(pg_url)
    with engine.begin() as conn:
        created = partitions.ensure_partitions(conn, now=datetime(2031, 1, 5, tzinfo=UTC))
        assert "readings_y2031m04" in created and "audit_log_y2031m01" in created
        assert partitions.ensure_partitions(conn, now=datetime(2031, 1, 5, tzinfo=UTC)) == []
        _patient(conn)
        _resource(conn, "r1")
        _resource(conn, "r2")
        _resource(conn, "r3")
        _reading(conn, "r1", "spo2", _epoch(2031, 1, 31))
        _reading(conn, "r2", "spo2", _epoch(2031, 2, 1))
        _reading(conn, "r3", "spo2", _epoch(2040, 6))  # no partition for that month yet
        _assessment(conn, "a1", datetime(2031, 3, 31, 23, 59, tzinfo=UTC))
        _audit(conn, 1, datetime(2031, 4, 1, 0, 0, tzinfo=UTC))
        assert _where(conn, "readings", "resource_id = 'r1'") == "readings_y2031m01"
        assert _where(conn, "readings", "resource_id = 'r2'") == "readings_y2031m02"
        assert _where(conn, "readings", "resource_id = 'r3'") == "readings_default"
        assert _where(conn, "assessments", "id = 'a1'") == "assessments_y2031m03"
        assert _where(conn, "audit_log", "seq = 1") == "audit_log_y2031m04"
        # A month whose rows already went to the default partition is refused, not forced.
        with pytest.raises(RuntimeError, match="readings_default holds 1 rows"):
            partitions.create_month_partition(conn, "readings", date(2040, 6, 1))
    engine.dispose()


def _of_2031(names: list[str]) -> list[str]:
    return [name for name in names if "_y2031" in name]


def test_retention_drops_whole_months_of_readings_and_assessments(pg_url: str) -> None:
    from sqlalchemy.orm import Session

    from service.security.record_guards import RecordImmutable, record_maintenance
    from service.security.retention import (
        RetentionPolicy,
        drop_expired_partitions,
        run_retention,
    )

    _alembic(pg_url, "upgrade", "head")
    engine = _engine(pg_url)
    now = datetime(2031, 6, 10, tzinfo=UTC)
    with engine.begin() as conn:
        partitions.ensure_partitions(conn, now=datetime(2031, 1, 1, tzinfo=UTC), months_ahead=5)
        _patient(conn)
        for resource, (year, month) in {"r1": (2031, 1), "r2": (2031, 2), "r3": (2031, 6)}.items():
            _resource(conn, resource)
            _reading(conn, resource, "spo2", _epoch(year, month))
        _assessment(conn, "a-jan", datetime(2031, 1, 20, tzinfo=UTC))
        _assessment(conn, "a-jun", datetime(2031, 6, 1, tzinfo=UTC))
        _audit(conn, 1, datetime(2031, 1, 20, tzinfo=UTC))
    # 120 days before 10 June is 11 February: January is wholly past, February only partly.
    # (The empty months the migration made around today, 2026-27, are also past by 2031.)
    policy = RetentionPolicy(readings=120, assessments=120, audit_log=120)
    with Session(engine) as session:
        lines = {line.category: line for line in run_retention(session, policy, now=now)}
        assert _of_2031(lines["readings"].partitions_due) == ["readings_y2031m01"]
        assert lines["readings"].due == 1 and lines["readings"].deleted == 0
        assert _of_2031(lines["assessments"].partitions_due) == ["assessments_y2031m01"]
        assert _of_2031(lines["audit_log"].partitions_due) == ["audit_log_y2031m01"]
        with pytest.raises(RecordImmutable):
            drop_expired_partitions(session, policy, now=now)
        with record_maintenance("controller decision 2031-06, archived to Norsk helsearkiv"):
            dropped = drop_expired_partitions(session, policy, now=now)
        session.commit()
    assert _of_2031(dropped) == ["readings_y2031m01", "assessments_y2031m01"]
    assert not [name for name in dropped if name.startswith("audit_log")]
    with engine.begin() as conn:
        assert "readings_y2031m01" not in partitions.partitions(conn, "readings")
        remaining = conn.execute(text("SELECT resource_id FROM readings ORDER BY 1")).scalars()
        assert list(remaining) == ["r2", "r3"]
        assert list(conn.execute(text("SELECT id FROM assessments")).scalars()) == ["a-jun"]
        # The audit log keeps its months until the chain can be anchored past them.
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 1
    engine.dispose()


def test_storage_partitions_command_creates_the_coming_months(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    _alembic(pg_url, "upgrade", "head")
    monkeypatch.setenv("TRIAGE_DATABASE_URL", pg_url)
    result = CliRunner().invoke(app, ["storage", "partitions", "--months-ahead", "14"])
    assert result.exit_code == 0, result.output
    farthest = partitions.partition_name(
        "readings", partitions.add_months(partitions.month_start(datetime.now(UTC)), 14)
    )
    assert farthest in result.output
    engine = _engine(pg_url)
    with engine.begin() as conn:
        assert farthest in partitions.partitions(conn, "readings")
    engine.dispose()
