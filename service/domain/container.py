"""Wires the domain services once per app (called from the lifespan)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from service.db.engine import transaction
from service.domain.ingestion import IngestionService
from service.domain.monitoring import MonitoringService
from service.domain.pathways import PathwayService
from service.domain.patients import PatientService
from service.domain.scoring import ScoringService
from service.domain.worklist import WorklistService
from service.outbox.writer import OutboxWriter


@dataclass
class Services:
    pathways: PathwayService
    patients: PatientService
    worklist: WorklistService
    scoring: ScoringService
    ingestion: IngestionService
    monitoring: MonitoringService


def build_services(app: FastAPI) -> Services:
    state = app.state
    pathways = PathwayService()
    with transaction(state.sessions) as session:
        pathways.seed(session)
    worklist = WorklistService()
    worklist.listeners.append(OutboxWriter(deliver=state.settings.outbox_endpoint is not None))
    scoring = ScoringService(state.models, pathways, worklist, state.metrics)
    ingestion = IngestionService(
        state.sessions, scoring, state.metrics, state.settings.scoring_enabled
    )
    from monitoring.config import DriftConfig

    # Thresholds are configuration (TRIAGE_DRIFT_CONFIG: a JSON/TOML file or inline JSON), read
    # once at startup, never on a request.
    monitoring = MonitoringService(
        state.settings, state.metrics, state.models, DriftConfig.from_env()
    )
    with state.sessions() as session:
        monitoring.refresh_gauges(session)  # alerts survive a restart on /metrics
    return Services(pathways, PatientService(pathways), worklist, scoring, ingestion, monitoring)
