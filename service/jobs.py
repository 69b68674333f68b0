"""Background jobs started in the app lifespan (the outbox sender, the drift-report schedule)."""

from __future__ import annotations

from service.app import BackgroundJob
from service.config import Settings


def default_background_jobs(settings: Settings) -> tuple[BackgroundJob, ...]:
    jobs: list[BackgroundJob] = []
    return tuple(jobs)
