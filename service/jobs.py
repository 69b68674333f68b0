"""Background jobs started in the app lifespan: scheduled re-scoring (and the outbox sender and
drift-report schedule where configured). Each runs in a worker thread so scoring requests on
the event loop are never blocked by it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from service.app import BackgroundJob
from service.config import Settings
from service.db.engine import transaction
from service.db.tables import JobRun, Patient
from service.db.unit_of_work import lock_patients, write
from service.domain.monitoring import ScheduledRun
from service.security.checkpoints import write_checkpoint

log = logging.getLogger("triage.jobs")

# Arbitrary constant naming the re-scoring job's PostgreSQL advisory lock, so that of N
# replicas exactly one runs it.
RESCORE_LOCK_ID = 0x7269_5343
# The same for the drift-report schedule.
DRIFT_LOCK_ID = 0x6472_6966
# The same for signing audit checkpoints: one replica signs each head.
CHECKPOINT_LOCK_ID = 0x6175_6463
# The first scheduled drift run waits this long after startup; `triage demo` runs one itself as
# soon as its cohort is loaded.
DRIFT_INITIAL_DELAY_S = 300.0


def periodic(
    name: str, interval_s: float, work: Callable[[FastAPI], object], initial_delay_s: float = 5.0
) -> BackgroundJob:
    """A job that runs ``work(app)`` in a thread every ``interval_s`` until shutdown."""

    @asynccontextmanager
    async def job(app: FastAPI) -> AsyncIterator[None]:
        async def loop() -> None:
            await asyncio.sleep(initial_delay_s)
            while True:
                try:
                    await asyncio.to_thread(work, app)
                except Exception:  # a failed run is logged and retried at the next interval
                    log.exception("background job %s failed", name)
                await asyncio.sleep(interval_s)

        task = asyncio.create_task(loop(), name=name)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    job.__name__ = name  # the job's name, so a deployment check can pair it with its CronJob
    return job


# Patients re-scored per transaction: short transactions keep SQLite's single write lock (and
# PostgreSQL's row locks) free for ingestion between chunks; a 10,000-patient run in one
# transaction blocked ingestion for half a minute (found by bench_scoring).
RESCORE_CHUNK = 500


def rescore_all(
    app: FastAPI, chunk: int = RESCORE_CHUNK, min_interval_s: float | None = None
) -> int:
    """Re-score every patient as of now, so those who stopped sending data surface.

    One reference time for the whole run, committed chunk by chunk, one replica at a time;
    with ``min_interval_s`` (the schedule) a run that another replica finished less than that
    long ago is not repeated, so N replicas re-score once per period, not N times.
    """
    as_of_s = int(time.time())
    count = 0
    with _session_lock(app.state.engine, RESCORE_LOCK_ID) as held:
        if not held:
            return 0
        if not claim_run(app.state.sessions, "rescore", min_interval_s):
            log.info("scheduled re-scoring: another replica ran it recently")
            return 0
        with app.state.sessions() as session:
            patient_ids = list(session.scalars(select(Patient.id).order_by(Patient.id)))
        scoring = app.state.services.scoring
        for start in range(0, len(patient_ids), chunk):
            ids = patient_ids[start : start + chunk]

            def work(session: Session, ids: list[str] = ids) -> int:
                # The same per-patient locks as ingestion, in the same order: a chunk and a
                # Bundle for the same patients take turns instead of deadlocking.
                lock_patients(session, ids)
                return int(scoring.rescore_cohort(session, as_of_s, ids))

            count += write(app.state.sessions, work)
        finish_run(app.state.sessions, "rescore")
    log.info("scheduled re-scoring stored %d assessments", count)
    return count


def _runner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


def claim_run(sessions: sessionmaker[Session], name: str, min_interval_s: float | None) -> bool:
    """Record that this replica starts job ``name``; False when it ran too recently.

    Called under the job's advisory lock, so the check and the record cannot race.
    """
    now = datetime.now(UTC)

    def work(session: Session) -> bool:
        run = session.get(JobRun, name)
        if run is None:
            session.add(JobRun(name=name, started_at=now, finished_at=None, runner=_runner()))
            return True
        finished = run.finished_at
        if finished is not None and finished.tzinfo is None:
            finished = finished.replace(tzinfo=UTC)
        if min_interval_s and finished and finished > now - timedelta(seconds=min_interval_s):
            return False
        run.started_at, run.finished_at, run.runner = now, None, _runner()
        return True

    return write(sessions, work)


def finish_run(sessions: sessionmaker[Session], name: str) -> None:
    def work(session: Session) -> None:
        run = session.get(JobRun, name)
        if run is not None:
            run.finished_at = datetime.now(UTC)

    write(sessions, work)


@contextlib.contextmanager
def _session_lock(engine: Engine, lock_id: int) -> Iterator[bool]:
    """A PostgreSQL advisory lock held for a whole job (not one transaction): True when held."""
    if engine.dialect.name != "postgresql":
        yield True  # SQLite means one process
        return
    with engine.connect() as conn:
        held = bool(
            conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock_id}).scalar()
        )
        conn.commit()
        try:
            yield held
        finally:
            if held:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
                conn.commit()


def run_drift_schedule(app: FastAPI) -> list[ScheduledRun]:
    """Drift reports for the last drift_window_days, overall and per pathway (one replica)."""
    settings: Settings = app.state.settings
    with _session_lock(app.state.engine, DRIFT_LOCK_ID) as held:
        if not held:
            log.info("scheduled drift reports: another replica is running them")
            return []
        runs = app.state.services.monitoring.run_schedule(
            app.state.sessions,
            datetime.now(UTC),
            settings.drift_window_days,
            min_interval=timedelta(hours=settings.drift_schedule_hours / 2),
        )
    stored = [r for r in runs if r.report_id]
    log.info(
        "scheduled drift reports: %d stored or found, %d skipped (not due, or too little data)",
        len(stored),
        len(runs) - len(stored),
    )
    return runs


def write_audit_checkpoint(app: FastAPI) -> None:
    """Sign the audit chain's head into the append-only checkpoint file (one replica)."""
    with _session_lock(app.state.engine, CHECKPOINT_LOCK_ID) as held:
        if not held:
            return
        writer = getattr(app.state, "audit", None)
        if writer is not None:
            writer.flush()  # sign what the requests so far wrote, not a head a batch behind
        with app.state.sessions() as session:
            write_checkpoint(session, app.state.settings)


def create_upcoming_partitions(app: FastAPI) -> None:
    """This month's and the next three months' partitions (PostgreSQL), so that inserts do not
    pile up in the default partition; idempotent, so every replica may run it."""
    from service.db.partitions import ensure_partitions

    with app.state.engine.begin() as conn:
        created = ensure_partitions(conn)
    if created:
        log.info("created partitions %s", ", ".join(created))


def dispatch_questionnaires(app: FastAPI, min_interval_s: float | None = None) -> None:
    """Send due questionnaires as Tasks, complete answered ones, mark missed ones (one replica
    per period: the unique (patient, questionnaire, opening) key stops a duplicate Task)."""
    from service.domain.questionnaire_tasks import QuestionnaireDispatch

    sessions = app.state.sessions
    if not claim_run(sessions, "questionnaires", min_interval_s):
        return
    try:
        dispatch = QuestionnaireDispatch(
            app.state.services.pathways, deliver=app.state.settings.outbox_endpoint is not None
        )
        with transaction(sessions) as session:
            result = dispatch.run(session, datetime.now(UTC))
        log.info("questionnaires dispatched", extra={"fields": vars(result)})
    finally:
        finish_run(sessions, "questionnaires")


def default_background_jobs(
    settings: Settings, *, drift_initial_delay_s: float = DRIFT_INITIAL_DELAY_S
) -> tuple[BackgroundJob, ...]:
    jobs: list[BackgroundJob] = []
    if not settings.in_process_jobs:  # CronJobs run them (deploy/k8s/cronjobs.yaml)
        return ()
    if settings.rescore_schedule_hours > 0:
        interval_s = settings.rescore_schedule_hours * 3600
        jobs.append(
            periodic(
                "rescore",
                interval_s,
                functools.partial(rescore_all, min_interval_s=interval_s / 2),
                initial_delay_s=60.0,
            )
        )
    if settings.drift_schedule_hours > 0:
        jobs.append(
            periodic(
                "drift-reports",
                settings.drift_schedule_hours * 3600,
                run_drift_schedule,
                initial_delay_s=drift_initial_delay_s,
            )
        )
    if settings.questionnaire_dispatch_minutes > 0:
        interval_s = settings.questionnaire_dispatch_minutes * 60
        jobs.append(
            periodic(
                "questionnaires",
                interval_s,
                functools.partial(dispatch_questionnaires, min_interval_s=interval_s / 2),
                initial_delay_s=30.0,
            )
        )
    if settings.audit_checkpoint_minutes > 0:
        jobs.append(
            periodic(
                "audit-checkpoint",
                settings.audit_checkpoint_minutes * 60,
                write_audit_checkpoint,
                initial_delay_s=60.0,
            )
        )
    if settings.partition_schedule_hours > 0 and settings.resolved_database_url.startswith(
        "postgresql"
    ):
        jobs.append(
            periodic(
                "storage-partitions",
                settings.partition_schedule_hours * 3600,
                create_upcoming_partitions,
                initial_delay_s=30.0,
            )
        )
    return tuple(jobs)
