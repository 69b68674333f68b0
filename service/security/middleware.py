"""Pure-ASGI security middleware: the audit trail of every protected request, and input safety
(strict JSON content types, JSON depth limit) for every JSON API route.

`install_security(app)` wires both, the record guards and the audit router in one call.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.security.audit import (
    AuditContext,
    AuditWriter,
    _current,
    build_events,
    request_patient_ids,
)
from service.security.policy import PUBLIC_ROUTES

log = logging.getLogger("triage.security")

# Routes under these prefixes speak JSON only (web pages elsewhere may post forms).
JSON_API_PREFIXES = ("/api/", "/fhir", "/cds-services", "/v2/")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


class AuditMiddleware:
    """One audit row per patient touched by each protected request (refusals included).

    It also owns the writer's life: started when the app's startup completes (the engine exists
    then) and drained when shutdown begins, before the lifespan disposes the engine.
    """

    def __init__(self, app: ASGIApp, *, synchronous: bool = False) -> None:
        self.app = app
        self.synchronous = synchronous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = AuditContext()
        token = _current.set(ctx)
        scope.setdefault("state", {})
        status = [500]

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            _current.reset(token)
            self._record(scope, ctx, status[0])

    def _record(self, scope: Scope, ctx: AuditContext, status: int) -> None:
        route: Any = scope.get("route")
        name = getattr(route, "name", None)
        path = getattr(route, "path", None)
        if not name or not path or name in PUBLIC_ROUTES:
            return  # unrouted 404s and public probes touch no patient data
        writer: AuditWriter | None = getattr(scope["app"].state, "audit", None)
        if writer is None:
            return
        state: dict[str, Any] = scope.get("state") or {}
        principal = ctx.principal or state.get("principal")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        patient_ids = ctx.patient_ids | request_patient_ids(
            scope.get("path_params") or {}, query, state
        )
        events = build_events(
            method=scope["method"],
            route_path=path,
            status=status,
            principal=principal,
            patient_ids=patient_ids,
            purpose=ctx.purpose or state.get("audit_purpose"),
            at=datetime.now(UTC),
        )
        try:
            writer.submit(events)
        except Exception:
            # Never lose the response because the log failed; the failure is loud in the log.
            log.exception("audit events could not be submitted")

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope.get("app")

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and app is not None:
                writer = getattr(app.state, "audit", None)
                if writer is not None:
                    writer.stop()
            return message

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and app is not None:
                engine = getattr(app.state, "engine", None)
                if engine is not None:
                    writer = AuditWriter(engine, synchronous=self.synchronous)
                    writer.start()
                    app.state.audit = writer
                    _register_audit_metrics(app)
            await send(message)

        await self.app(scope, lifespan_receive, lifespan_send)


def _register_audit_metrics(app: Any) -> None:
    """Backlog and write failures on /metrics: logging must never stop silently (Normen)."""
    from prometheus_client import Gauge

    metrics = getattr(app.state, "metrics", None)
    if metrics is None or getattr(metrics, "audit_backlog", None) is not None:
        return
    metrics.audit_backlog = Gauge(
        "triage_audit_backlog_events",
        "Audit events accepted but not yet stored",
        registry=metrics.registry,
    )
    # Read through app.state: a restarted lifespan replaces the writer, not the registry.
    metrics.audit_backlog.set_function(
        lambda: getattr(getattr(app.state, "audit", None), "backlog", 0)
    )
    metrics.audit_failures = Gauge(
        "triage_audit_write_failures",
        "Failed audit batch writes since start (each is retried)",
        registry=metrics.registry,
    )
    metrics.audit_failures.set_function(
        lambda: getattr(getattr(app.state, "audit", None), "failures", 0)
    )


def json_depth(raw: bytes) -> int:
    """Deepest nesting of objects/arrays, without parsing (strings are blanked out first)."""
    if b"[" not in raw and b"{" not in raw:
        return 0
    stripped = _JSON_STRING.sub(b'""', raw) if b'"' in raw else raw
    codes = np.frombuffer(stripped, dtype=np.uint8)
    steps = ((codes == 0x7B) | (codes == 0x5B)).astype(np.int32)  # { [
    steps -= (codes == 0x7D) | (codes == 0x5D)  # } ]
    return int(np.cumsum(steps).max(initial=0))


def is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    if not media.startswith("application/"):
        return False
    subtype = media.removeprefix("application/")
    return subtype == "json" or subtype.endswith("+json")


class InputGuard:
    """415 for a non-JSON body on a JSON API route; 400 for JSON nested deeper than allowed."""

    def __init__(self, app: ASGIApp, *, max_json_depth: int = 32) -> None:
        self.app = app
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _BODY_METHODS
            or not scope["path"].startswith(JSON_API_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").strip()
        maybe_body = (declared not in (b"", b"0")) or b"transfer-encoding" in headers
        if not maybe_body:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            try:
                message = await receive()
            except HTTPException as exc:  # the body-size guard outside us (413)
                await self._refuse(scope, send, exc.status_code, "too-costly", str(exc.detail))
                return
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            if not is_json_media_type(content_type):
                await self._refuse(
                    scope,
                    send,
                    415,
                    "not-supported",
                    "Content-Type must be application/json (or application/fhir+json on /fhir)",
                )
                return
            if json_depth(body) > self.max_json_depth:
                await self._refuse(
                    scope,
                    send,
                    400,
                    "structure",
                    f"JSON nesting is deeper than {self.max_json_depth} levels",
                )
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
        from service.api.errors import error_response

        async def empty() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        response = error_response(Request(scope), status, code, message)
        await response(scope, empty, send)


def install_security(app: Any) -> None:
    """Audit middleware, input guard, record guards, audit hooks and the audit router."""
    from service.api import audit as audit_api
    from service.security.audit import install_audit_hooks
    from service.security.record_guards import install_record_guards

    install_record_guards()
    install_audit_hooks()
    app.include_router(audit_api.router)
    settings = app.state.settings
    app.add_middleware(InputGuard, max_json_depth=settings.max_json_depth)
    app.add_middleware(AuditMiddleware)
