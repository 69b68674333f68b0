"""Composition: `create_app(settings)` builds the app; models and sessions load in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from service.api.errors import install_error_handlers
from service.config import Settings
from service.db.engine import make_engine, make_session_factory
from service.middleware import RequestGuard
from service.model_registry import ChampionResolver, ModelRegistry
from service.observability import Metrics, configure_logging
from service.security.deps import authorize
from service.security.middleware import install_security
from service.security.tokens import TokenVerifier

log = logging.getLogger("triage.app")

# A background job started in the lifespan: given the app, returns an async context manager.
BackgroundJob = Callable[[FastAPI], Any]


def create_app(
    settings: Settings | None = None,
    *,
    champion_resolver: ChampionResolver | None = None,
    background_jobs: tuple[BackgroundJob, ...] = (),
) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    from service.outbox.sender import outbox_sender_job

    # The DIPS outbox sender (with no endpoint configured it only keeps the /metrics gauge).
    background_jobs = (*background_jobs, outbox_sender_job)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from service.domain.container import build_services

        configure_logging(settings.log_json)
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        app.state.engine = engine
        app.state.sessions = make_session_factory(engine)
        app.state.models = ModelRegistry(settings, champion_resolver)
        loaded = app.state.models.load()  # refuses to start on a hash/spec mismatch
        metrics.model_info.labels(loaded.model.name, loaded.model.version).set(1)
        app.state.verifier = TokenVerifier(settings)
        if settings.cds_client_jwks:
            from service.security.cds_client import CdsClientVerifier

            app.state.cds_clients = CdsClientVerifier(settings)
        app.state.services = build_services(app)
        from service.domain.export import ExportService

        app.state.exports = ExportService(app.state.sessions, engine, settings)
        async with AsyncExitStack() as stack:
            for job in background_jobs:
                await stack.enter_async_context(job(app))
            log.info("service ready", extra={"fields": {"model": loaded.model.version}})
            yield
        app.state.services.monitoring.close()  # the drift-report worker process
        engine.dispose()

    app = FastAPI(
        title="Home follow-up triage",
        version="0.1.0",
        summary="Risk scoring, explanations, pathway rules and a prioritised worklist for "
        "digital home follow-up (FHIR R4, CDS Hooks, Open Inference Protocol).",
        lifespan=lifespan,
        dependencies=[Depends(authorize)],
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)

    from service.api import (
        cds_hooks,
        export,
        fhir,
        ops,
        outbox,
        outcomes,
        pathways,
        patients,
        v2,
        worklist,
    )
    from service.api import models as models_api
    from service.api import monitoring as monitoring_api

    # V2 first: the benchmarked inference path is matched before the other routes.
    for router in (
        v2.router,
        ops.router,
        patients.router,
        export.router,  # before fhir.router: /fhir/$export is not a resource type
        fhir.router,
        worklist.router,
        models_api.router,
        pathways.router,
        cds_hooks.router,
        outbox.router,
        monitoring_api.router,
        outcomes.router,
    ):
        app.include_router(router)
    install_security(app)  # audit trail, input guard, record guards, /api/v1/audit
    from service.web import install_web

    install_web(app)  # web pages under /web: session cookie, CSRF, the same route × role gate
    # V2 inference skips the routed stack (see V2InferFastPath: same auth, audit, limits).
    app.add_middleware(v2.V2InferFastPath)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    return app
