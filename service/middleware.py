"""Pure-ASGI request guard: body-size limit (413) and the request latency histogram."""

from __future__ import annotations

import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability import Metrics


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        limit = self.max_body_bytes

        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(scope, send, limit)
            self._observe(scope, 413, started)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPException from body parsing, so this becomes a 413.
                    raise HTTPException(413, f"request body exceeds {limit} bytes")
            return message

        started_response = [False]

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                started_response[0] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            # A chunked body (no Content-Length) crossed the limit inside a handler that reads
            # the body itself (the V2 fast path) rather than through FastAPI, which maps the
            # HTTPException: answer 413 here instead of letting the server log a 500.
            if received <= limit or started_response[0]:
                raise
            status[0] = 413
            await _too_large(scope, send, limit)
        finally:
            self._observe(scope, status[0], started)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route: Any = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.request_latency.labels(scope["method"], template, str(status)).observe(
            time.perf_counter() - started
        )


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    import json

    path: str = scope.get("path", "")
    message = f"request body exceeds {limit} bytes"
    if path.startswith("/fhir"):
        body = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "too-costly", "diagnostics": message}],
        }
        media = b"application/fhir+json"
    else:
        body, media = {"detail": message}, b"application/json"
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", media),
                (b"content-length", str(len(raw)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})
