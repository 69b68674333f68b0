"""The built-in drift schedule: one run reports overall and per pathway, is not repeated before it
is due, skips (and logs) small windows, starts from the lifespan, and is exclusive on
PostgreSQL."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import POSTGRES_URL
from tests.service.monitoring.conftest import Seeded


def test_schedule_job_runs_once_per_scope_then_waits(seeded: Seeded) -> None:
    from service.db.tables import DriftReport
    from service.jobs import run_drift_schedule

    # The schedule's window ends at "now" truncated to the second; rows scored within that last
    # fraction of a second belong to the next window. On a fast machine the whole seeded cohort
    # can be that young, so let a second boundary pass first.
    _past_a_second_boundary(seeded)
    before = datetime.now(UTC)
    runs = run_drift_schedule(seeded.app)
    by_scope = {r.pathway: r for r in runs}
    assert set(by_scope) == {None, "copd", "heart-failure"}  # overall and each pathway seen
    assert all(r.report_id and r.verdict for r in runs), runs
    with seeded.app.state.sessions() as session:
        rows = list(
            session.scalars(
                select(DriftReport).where(DriftReport.id.in_([r.report_id for r in runs]))
            )
        )
    assert {r.created_by for r in rows} == {"schedule"}
    for r in rows:
        end = r.window_end.replace(tzinfo=UTC)
        assert before - timedelta(seconds=2) <= end <= datetime.now(UTC)
        assert end - r.window_start.replace(tzinfo=UTC) == timedelta(
            days=seeded.settings.drift_window_days
        )

    again = run_drift_schedule(seeded.app)  # within the interval: nothing new
    assert [r.skipped for r in again] == ["not due yet"] * 3
    with seeded.app.state.sessions() as session:
        scheduled = session.scalars(
            select(DriftReport.id).where(DriftReport.created_by == "schedule")
        ).all()
    assert sorted(scheduled) == sorted(r.report_id for r in runs)


def _past_a_second_boundary(seeded: Seeded) -> None:
    """Sleep into the next whole second: everything seeded is then older than the window end,
    and each caller gets a window (and so a report key) of its own."""
    import time

    assert datetime.now(UTC) >= seeded.loaded_until
    time.sleep(1.01 - datetime.now(UTC).microsecond / 1e6)


def test_schedule_skips_small_windows_and_logs_it(
    seeded: Seeded, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitoring.config import DriftConfig
    from service.db.tables import DriftReport

    service = seeded.app.state.services.monitoring
    monkeypatch.setattr(service, "config", DriftConfig(min_window_patients=10_000))
    with seeded.app.state.sessions() as session:
        count_before = len(session.scalars(select(DriftReport.id)).all())
    _past_a_second_boundary(seeded)
    with caplog.at_level(logging.INFO, logger="triage.monitoring"):
        runs = service.run_schedule(seeded.app.state.sessions, datetime.now(UTC), 7)
    assert runs and all(r.report_id is None for r in runs)
    assert all("at least 10000 patients" in (r.skipped or "") for r in runs)
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == len(runs)
    with seeded.app.state.sessions() as session:
        assert len(session.scalars(select(DriftReport.id)).all()) == count_before


def test_schedule_is_part_of_the_background_jobs(
    make_settings: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Started by the lifespan (in a thread); the hand-made model has no reference, so the
    run says why it reported nothing instead of failing."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.jobs import default_background_jobs
    from tests.helpers import migrate_test_database as migrate

    quiet = {
        "rescore_schedule_hours": 0,
        "audit_checkpoint_minutes": 0,
        "partition_schedule_hours": 0,
        "questionnaire_dispatch_minutes": 0,
    }
    off = make_settings(database_url=database_url, drift_schedule_hours=0, **quiet)
    on = make_settings(database_url=database_url, drift_schedule_hours=24, **quiet)
    assert default_background_jobs(off) == ()
    jobs = default_background_jobs(on, drift_initial_delay_s=0)
    assert len(jobs) == 1
    migrate(on.resolved_database_url)
    with (
        caplog.at_level(logging.WARNING, logger="triage.monitoring"),
        TestClient(create_app(on, background_jobs=jobs)) as client,
    ):
        assert client.get("/healthz").status_code == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            "scheduled drift reports not run" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.05)
    assert any("no reference sample" in r.getMessage() for r in caplog.records)


@pytest.mark.postgres
def test_schedule_lock_admits_one_replica() -> None:
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not configured: set TRIAGE_TEST_DATABASE_URL")
    from sqlalchemy import create_engine

    from service.jobs import DRIFT_LOCK_ID, _session_lock

    engine = create_engine(POSTGRES_URL)
    held_inside = threading.Event()
    release = threading.Event()
    results: list[bool] = []

    def first_replica() -> None:
        with _session_lock(engine, DRIFT_LOCK_ID) as held:
            results.append(held)
            held_inside.set()
            release.wait(10)

    worker = threading.Thread(target=first_replica)
    worker.start()
    try:
        assert held_inside.wait(10)
        with _session_lock(engine, DRIFT_LOCK_ID) as second:
            assert second is False
    finally:
        release.set()
        worker.join(10)
    with _session_lock(engine, DRIFT_LOCK_ID) as after:  # released when the first one ends
        assert after is True
    assert results == [True]
    engine.dispose()


def test_demo_prints_its_first_drift_run(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import _first_drift_run

    _first_drift_run(seeded.app, "http://127.0.0.1:8000")
    out = capsys.readouterr().out
    assert "Drift reports (schedule, last 7 days; synthetic data):" in out
    assert "all pathways: " in out and "copd: " in out
    assert "http://127.0.0.1:8000/api/v1/monitoring/drift-reports" in out
