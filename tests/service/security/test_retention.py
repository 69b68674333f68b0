"""Retention: periods from the controller's policy file; record entries are never deleted here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from service.db.engine import make_engine
from service.db.tables import OutboxEntry
from service.security.audit import AuditEvent, append_events
from service.security.retention import RetentionPolicy, run_retention
from tests.helpers import migrate_test_database as migrate


def _outbox(engine: Any, age_days: int, state: str) -> None:
    at = datetime.now(UTC) - timedelta(days=age_days)
    with Session(engine) as session:
        session.add(
            OutboxEntry(
                created_at=at,
                patient_id="p",
                item_id="i",
                event="opened",
                payload={},
                state=state,
                attempts=1,
                next_attempt_at=at,
            )
        )
        session.commit()


@pytest.fixture
def engine(database_url: str) -> Any:
    migrate(database_url)
    engine = make_engine(database_url)
    for age, state in ((200, "delivered"), (200, "pending"), (10, "delivered")):
        _outbox(engine, age, state)
    old = datetime.now(UTC) - timedelta(days=4000)
    append_events(
        engine, [AuditEvent(old, "u", "clinician", "1", "p", "read", "GET /x", "treatment", 200)]
    )
    yield engine
    engine.dispose()


def test_default_policy_keeps_everything(engine: Any) -> None:
    with Session(engine) as session:
        lines = run_retention(session, RetentionPolicy(), apply=True)
    assert all(line.due == 0 and line.deleted == 0 for line in lines)


def test_delivered_outbox_copies_past_their_period_are_deleted(engine: Any) -> None:
    with Session(engine) as session:
        lines = {
            x.category: x
            for x in run_retention(
                session, RetentionPolicy(outbox_delivered=90, audit_log=365), apply=True
            )
        }
        session.commit()
        left = session.scalar(select(func.count()).select_from(OutboxEntry))
    assert lines["outbox_delivered"].deleted == 1
    assert left == 2  # the undelivered one and the recent one stay
    assert lines["audit_log"].due == 1 and lines["audit_log"].deleted == 0


def test_policy_file_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"assessmentz": 10}))
    with pytest.raises(ValueError, match="unknown"):
        RetentionPolicy.from_file(bad)
    bad.write_text(json.dumps({"audit_log": 0}))
    with pytest.raises(ValueError, match="whole number"):
        RetentionPolicy.from_file(bad)


def test_cli_reports_then_applies(engine: Any, database_url: str, tmp_path: Path) -> None:
    from service.security.cli import app as cli

    policy = tmp_path / "retention.json"
    policy.write_text(json.dumps({"outbox_delivered": 90, "assessments": 3650}))
    args = ["audit", "retention", "--policy", str(policy), "--database-url", database_url]
    dry = CliRunner().invoke(cli, args)
    assert dry.exit_code == 0 and "due       1  deleted       0" in dry.output
    done = CliRunner().invoke(cli, [*args, "--apply"])
    assert done.exit_code == 0 and "deleted       1" in done.output
