"""`triage drift run | list | sign-off | export-summary` against the service's own database, and
the sign-off end to end across the command line and the API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.service.monitoring.conftest import SMALL_WINDOWS, Seeded

REPORTS = "/api/v1/monitoring/drift-reports"
_ID = re.compile(r"report id: ([0-9a-f-]{36})")


@pytest.fixture
def cli(seeded: Seeded) -> Any:
    from service.cli import app

    env = {
        "TRIAGE_DATABASE_URL": seeded.settings.resolved_database_url,
        "TRIAGE_VAR_DIR": str(seeded.settings.var_dir),
        "TRIAGE_MODEL_DIR": str(seeded.settings.model_dir),
        "TRIAGE_ENVIRONMENT": "test",
        "TRIAGE_MLFLOW_TRACKING_URI": "",
        "TRIAGE_DRIFT_CONFIG": json.dumps(SMALL_WINDOWS),
    }
    runner = CliRunner()

    def invoke(*args: str, **extra_env: str) -> Any:
        return runner.invoke(app, list(args), env={**env, **extra_env})

    return invoke


def _end(seeded: Seeded, minutes: int) -> str:
    return (seeded.loaded_until + timedelta(minutes=minutes)).isoformat()


def _audit(seeded: Seeded, resource_part: str) -> list[Any]:
    from service.db.tables import AuditEntry

    with seeded.app.state.sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.resource.contains(resource_part))
                .order_by(AuditEntry.seq)
            )
        )


def test_run_prints_verdict_and_id_and_is_idempotent(seeded: Seeded, cli: Any) -> None:
    first = cli("drift", "run", "--days", "7", "--end", _end(seeded, 11), "--by", "HPR-42")
    assert first.exit_code == 0, first.output
    assert re.search(r"verdict: (ok|warning|drift)", first.output)
    report_id = _ID.search(first.output).group(1)  # type: ignore[union-attr]
    again = cli("drift", "run", "--days", "7", "--end", _end(seeded, 11))
    assert again.exit_code == 0 and f"report id: {report_id} (already stored)" in again.output
    detail = seeded.client.get(f"{REPORTS}/{report_id}", headers=seeded.headers("compliance"))
    assert detail.status_code == 200 and detail.json()["created_by"] == "cli:HPR-42"

    scoped = cli("drift", "run", "--days", "7", "--pathway", "copd", "--end", _end(seeded, 11))
    assert scoped.exit_code == 0, scoped.output
    assert detail.json()["id"] not in scoped.output
    listed = cli("drift", "list", "--pathway", "copd")
    assert _ID.search(scoped.output).group(1) in listed.output  # type: ignore[union-attr]


def test_run_on_an_empty_window_says_why(seeded: Seeded, cli: Any) -> None:
    early = (seeded.loaded_from - timedelta(days=30)).isoformat()
    result = cli("drift", "run", "--days", "7", "--end", early)
    assert result.exit_code == 2
    assert "no report: the window" in result.output and "no patient-days" in result.output
    assert "Traceback" not in result.output


def test_sign_off_end_to_end_cli_and_api(seeded: Seeded, cli: Any) -> None:
    run = cli("drift", "run", "--days", "7", "--end", _end(seeded, 12))
    report_id = _ID.search(run.output).group(1)  # type: ignore[union-attr]
    assert f"{report_id}" in cli("drift", "list").output
    assert "awaiting review" in cli("drift", "list").output

    signed = cli(
        "drift",
        "sign-off",
        report_id,
        "--decision",
        "action-required",
        "--comment",
        "Weight scale at one trust: owner device team, by 1 Dec.",
        "--by",
        "9144889",
    )
    assert signed.exit_code == 0, signed.output
    assert "signed off: action-required by 9144889" in signed.output
    # The API sees the sign-off, and refuses a second one.
    shown = seeded.client.get(f"{REPORTS}/{report_id}", headers=seeded.headers("compliance"))
    assert shown.json()["sign_off"]["signed_by"] == "9144889"
    assert shown.json()["sign_off"]["decision"] == "action-required"
    api_second = seeded.client.post(
        f"{REPORTS}/{report_id}/sign-off",
        json={"decision": "accepted", "comment": "fine by me"},
        headers=seeded.headers("compliance"),
    )
    assert api_second.status_code == 409
    cli_second = cli(
        "drift",
        "sign-off",
        report_id,
        "--decision",
        "accepted",
        "--comment",
        "again",
        "--by",
        "9144889",
    )
    assert cli_second.exit_code == 1 and "already signed off" in cli_second.output
    rows = _audit(seeded, f"CLI triage drift sign-off {report_id}")
    assert [(r.actor, r.role, r.action, r.outcome, r.purpose) for r in rows] == [
        ("9144889", "compliance", "write", 201, "audit-control"),
        ("9144889", "compliance", "write", 409, "audit-control"),
    ]
    assert f"{report_id}" in cli("drift", "list").output
    assert "action-required" in cli("drift", "list").output


def test_api_sign_off_is_final_for_the_cli_too(seeded: Seeded, cli: Any) -> None:
    run = cli("drift", "run", "--days", "7", "--end", _end(seeded, 13))
    report_id = _ID.search(run.output).group(1)  # type: ignore[union-attr]
    api = seeded.client.post(
        f"{REPORTS}/{report_id}/sign-off",
        json={"decision": "accepted", "comment": "Explained: test cohort."},
        headers=seeded.headers("compliance", subject="HPR-5"),
    )
    assert api.status_code == 201
    refused = cli(
        "drift",
        "sign-off",
        report_id,
        "--decision",
        "escalated",
        "--comment",
        "escalate it",
        "--by",
        "HPR-6",
    )
    assert refused.exit_code == 1 and "already signed off" in refused.output


def test_sign_off_refuses_bad_input_and_production(seeded: Seeded, cli: Any) -> None:
    bad_decision = cli(
        "drift", "sign-off", "x", "--decision", "fine", "--comment", "abc", "--by", "1"
    )
    assert bad_decision.exit_code == 2
    fnr_signer = cli(
        "drift",
        "sign-off",
        "x",
        "--decision",
        "accepted",
        "--comment",
        "abc",
        "--by",
        "15076500565",
    )
    assert fnr_signer.exit_code == 2 and "15076500565" not in fnr_signer.output
    unknown = cli(
        "drift",
        "sign-off",
        "no-such-report",
        "--decision",
        "accepted",
        "--comment",
        "abc",
        "--by",
        "1",
    )
    assert unknown.exit_code == 1 and "not found" in unknown.output
    production = cli(
        "drift",
        "sign-off",
        "x",
        "--decision",
        "accepted",
        "--comment",
        "abc",
        "--by",
        "1",
        TRIAGE_ENVIRONMENT="production",
        TRIAGE_AUTH_MODE="oidc",
        TRIAGE_OIDC_ISSUER="https://helseid-sts.nhn.no",
        TRIAGE_OIDC_JWKS_URL="https://helseid-sts.nhn.no/jwks",
        TRIAGE_SESSION_SECRET="a-real-secret",
    )
    assert production.exit_code == 2 and "in production" in production.output


def test_export_summary_reads_reports_and_sign_offs(
    seeded: Seeded, cli: Any, tmp_path: Path
) -> None:
    run = cli("drift", "run", "--days", "12", "--end", _end(seeded, 14))
    report_id = _ID.search(run.output).group(1)  # type: ignore[union-attr]
    cli(
        "drift",
        "sign-off",
        report_id,
        "--decision",
        "escalated",
        "--comment",
        "Escalated to ML engineering for re-evaluation.",
        "--by",
        "HPR-77",
    )
    # Reports are filed under the month they were made, whatever their window.
    start_month = datetime.now(UTC).strftime("%Y-%m")
    result = cli("drift", "export-summary", "--month", start_month, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip().splitlines()[-1])
    assert path.parent == tmp_path and path.name == f"drift-summary-{start_month}.md"
    text = path.read_text(encoding="utf-8")
    assert f"# Drift monitoring, {start_month}" in text
    assert "Escalated to ML engineering / Eskalert til ML-teamet" in text
    assert "HPR-77" in text and report_id[:12] in text
    for p in seeded.cohort.patients:
        assert p.identifier not in text
    assert (
        cli("drift", "export-summary", "--month", "2026-13", "--out", str(tmp_path)).exit_code == 2
    )


def test_offline_file_report_is_still_reachable() -> None:
    """monitoring's own command (exported windows as .npz/.parquet) lives at `triage drift file`
    beside the store-backed commands, and `drift-summary` stays where it was."""
    import typer

    from monitoring.cli import register
    from service.cli import _mount_offline_drift

    top, drift = typer.Typer(), typer.Typer()
    top.add_typer(drift, name="drift")

    @drift.command("run")
    def run() -> None:
        """Stands in for the store-backed commands."""

    _mount_offline_drift(register(typer.Typer()), top, drift)
    runner = CliRunner()
    result = runner.invoke(top, ["drift", "file", "--help"])
    assert result.exit_code == 0 and "--current" in result.output
    assert runner.invoke(top, ["drift-summary", "--help"]).exit_code == 0
    assert runner.invoke(top, ["drift", "run", "--help"]).exit_code == 0


def test_window_end_defaults_to_now(seeded: Seeded, cli: Any) -> None:
    result = cli("drift", "run", "--days", "7")
    assert result.exit_code == 0, result.output
    report_id = _ID.search(result.output).group(1)  # type: ignore[union-attr]
    body = seeded.client.get(f"{REPORTS}/{report_id}", headers=seeded.headers("ml-engineer"))
    end = datetime.fromisoformat(body.json()["window_end"])
    assert abs((end - datetime.now(UTC)).total_seconds()) < 120


def test_drift_file_demo_unchanged_works_and_bad_input_is_a_message(tmp_path: Path) -> None:
    """`triage drift file --demo unchanged`: a simulated window against the same cohort's own
    baseline, no database needed; an unknown demo or an empty window is a message, not a
    traceback. Run as the console script runs (main() mounts the offline commands)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRIAGE_DRIFT_CONFIG": json.dumps({"render_html": False})}
    out = tmp_path / "reports"

    def triage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from service.cli import main; main()", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    result = triage("drift", "file", "--demo", "unchanged", "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: ok" in result.stdout and "site's own baseline" in result.stdout
    assert len(list(out.glob("*.json"))) == 1
    unknown = triage("drift", "file", "--demo", "nonsense")
    assert unknown.returncode == 2 and "unknown demo" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    empty = triage(
        "drift", "file", "--demo", "unchanged", "--seed", "1", "--out", str(out),
        "--window-start", "2020-01-01", "--window-end", "2020-01-08",
    )  # fmt: skip
    assert empty.returncode == 2, empty.stdout + empty.stderr
    assert "no report:" in empty.stderr and "no patient-days" in empty.stderr
    assert "Traceback" not in empty.stderr
