"""Issue 12, finding 7: the audit chain is anchored outside the database.

An attacker with database rights drops the append-only triggers, edits a row and recomputes the
hash of every later row. The chain is then consistent (the old verify printed "intact"); the
signed checkpoints in the append-only file are not, and verify names the rewritten range without
being told any head.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from service.config import Settings
from service.db.engine import make_engine, make_session_factory
from service.db.tables import AuditEntry
from service.security.audit import append_events, entry_hash, verify_chain
from service.security.checkpoints import (
    CheckpointError,
    checkpoint_path,
    verify_with_checkpoints,
    write_checkpoint,
)
from tests.helpers import migrate_test_database as migrate
from tests.service.security.test_audit import _event, drop_append_only_triggers


@pytest.fixture
def setup(any_database_url: str, tmp_path: Path) -> Any:
    migrate(any_database_url)
    engine = make_engine(any_database_url)
    settings = Settings(var_dir=tmp_path / "var", database_url=any_database_url)
    append_events(engine, [_event(i) for i in range(10)])
    yield engine, settings
    engine.dispose()


def _checkpoint(engine: Any, settings: Settings) -> Any:
    with make_session_factory(engine)() as session:
        return write_checkpoint(session, settings)


def _verify(engine: Any, settings: Settings) -> Any:
    with make_session_factory(engine)() as session:
        return verify_with_checkpoints(session, settings)


def rewrite_from(engine: Any, seq: int, **changes: Any) -> None:
    """Edit row ``seq`` and recompute its hash and every later row's, as an attacker would."""
    drop_append_only_triggers(engine)
    with make_session_factory(engine)() as session:
        rows = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    prev = next(r.hash for r in rows if r.seq == seq - 1) if seq > 1 else "0" * 64
    with engine.begin() as conn:
        for row in rows:
            if row.seq < seq:
                continue
            if row.seq == seq:
                for key, value in changes.items():
                    setattr(row, key, value)
            digest = entry_hash(row.seq, prev, row)
            conn.execute(
                text(
                    "UPDATE audit_log SET prev_hash = :p, hash = :h"
                    + "".join(f", {k} = :{k}" for k in changes if row.seq == seq)
                    + " WHERE seq = :s"
                ),
                {"p": prev, "h": digest, "s": row.seq, **(changes if row.seq == seq else {})},
            )
            prev = digest


def test_intact_chain_matches_its_checkpoint(setup: Any) -> None:
    engine, settings = setup
    signed = _checkpoint(engine, settings)
    assert signed.seq == 10
    result = _verify(engine, settings)
    assert result.ok and result.checkpoint_seq == 10
    assert "matches the signed checkpoint" in result.describe()
    line = json.loads(checkpoint_path(settings).read_text().splitlines()[-1])
    assert set(line) == {"seq", "head", "at", "key_id", "signature"}


def test_rewritten_chain_with_recomputed_hashes_is_caught(setup: Any) -> None:
    engine, settings = setup
    _checkpoint(engine, settings)
    rewrite_from(engine, 4, outcome=403, actor="someone-else")
    with make_session_factory(engine)() as session:
        assert verify_chain(session).ok  # the chain alone cannot tell: the old verify said intact
    result = _verify(engine, settings)
    assert not result.ok and result.bad_seq == 10
    assert "rows 1..10 were rewritten" in (result.problem or "")


def test_checkpoints_narrow_the_rewritten_range(setup: Any) -> None:
    engine, settings = setup
    _checkpoint(engine, settings)  # seq 10
    append_events(engine, [_event(i) for i in range(10, 15)])
    _checkpoint(engine, settings)  # seq 15
    rewrite_from(engine, 12, purpose="curiosity")
    result = _verify(engine, settings)
    assert not result.ok and "rows 11..15 were rewritten" in (result.problem or "")


def test_deleted_newest_rows_are_missed_against_the_checkpoint(setup: Any) -> None:
    engine, settings = setup
    _checkpoint(engine, settings)
    drop_append_only_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 8"))
    result = _verify(engine, settings)
    assert not result.ok and "rows 8..10 are missing" in (result.problem or "")


def test_a_rewritten_chain_is_never_signed(setup: Any) -> None:
    engine, settings = setup
    _checkpoint(engine, settings)
    append_events(engine, [_event(i) for i in range(10, 12)])
    rewrite_from(engine, 3, role="admin")
    with pytest.raises(CheckpointError, match="no longer carries the hash"):
        _checkpoint(engine, settings)
    assert len(checkpoint_path(settings).read_text().splitlines()) == 1


def test_an_altered_checkpoint_file_is_reported(setup: Any) -> None:
    engine, settings = setup
    _checkpoint(engine, settings)
    path = checkpoint_path(settings)
    line = json.loads(path.read_text())
    rewrite_from(engine, 2, outcome=500)
    with make_session_factory(engine)() as session:
        line["head"] = session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == 10))
    path.write_text(json.dumps(line) + "\n")  # the attacker "fixes" the checkpoint too
    result = _verify(engine, settings)
    assert not result.ok and "not signed by this key" in (result.problem or "")


def test_cli_checkpoint_then_verify_finds_the_rewrite(setup: Any, tmp_path: Path) -> None:
    from service.security.cli import app as cli

    engine, settings = setup
    env = {"TRIAGE_VAR_DIR": str(settings.var_dir), "TRIAGE_DATABASE_URL": settings.database_url}
    runner = CliRunner()
    signed = runner.invoke(cli, ["audit", "checkpoint"], env=env)
    assert signed.exit_code == 0, signed.output
    assert "audit checkpoint: seq 10" in signed.output
    ok = runner.invoke(cli, ["audit", "verify"], env=env)
    assert ok.exit_code == 0 and "matches the signed checkpoint" in ok.output
    rewrite_from(engine, 5, purpose="curiosity")
    broken = runner.invoke(cli, ["audit", "verify"], env=env)
    assert broken.exit_code == 1, broken.output
    assert "BROKEN" in broken.output and "rewritten" in broken.output
    refused = runner.invoke(cli, ["audit", "checkpoint"], env=env)
    assert refused.exit_code == 1


def test_the_in_process_job_signs_and_the_api_reports_it(client: Any, auth: Any) -> None:
    from service.jobs import write_audit_checkpoint

    client.get("/api/v1/worklist", headers=auth("clinician"))  # some audit rows
    write_audit_checkpoint(client.app)
    verified = client.get("/api/v1/audit/verify", headers=auth("compliance")).json()
    assert verified["ok"] is True
    assert verified["checkpoint_seq"] is not None and verified["checkpoint_seq"] >= 1


def test_production_without_a_key_signs_nothing(tmp_path: Path) -> None:
    from service.security.checkpoints import signing_key

    forced = Settings.model_construct(var_dir=tmp_path, environment="production")
    with pytest.raises(CheckpointError, match="must be set in production"):
        signing_key(forced)
