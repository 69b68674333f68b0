"""The one place where errors become HTTP responses.

FHIR routes (paths under /fhir) answer with an OperationOutcome naming the bad element; the rest
answer {"detail": ..., "location": ...}. Nothing internal leaks from a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import LostRace, TriageError

log = logging.getLogger("triage.errors")

FHIR_JSON = "application/fhir+json"


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": issues}


def _issue(code: str, message: str, location: str | None, severity: str = "error") -> dict:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": message}
    if location:
        issue["expression"] = [location]
    return issue


def _is_fhir(request: Request) -> bool:
    return request.url.path.startswith("/fhir")


def _is_v2(request: Request) -> bool:
    return request.url.path.startswith("/v2")


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    location: str | None = None,
    headers: dict[str, str] | None = None,
    problems: list[dict[str, str]] | None = None,
) -> JSONResponse:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(type=code, status=str(status)).inc()
    if _is_fhir(request):
        issues = (
            [_issue(code, p["message"], p["path"]) for p in problems]
            if problems
            else [_issue(code, message, location)]
        )
        return JSONResponse(
            operation_outcome(issues), status, media_type=FHIR_JSON, headers=headers
        )
    if _is_v2(request):  # Open Inference Protocol error shape
        return JSONResponse({"error": message}, status, headers=headers)
    body: dict[str, Any] = {"detail": message}
    if location:
        body["location"] = location
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TriageError)
    async def triage_error(request: Request, exc: TriageError) -> JSONResponse:
        headers = None
        if exc.status_code == 401:
            headers = {
                "WWW-Authenticate": f'Bearer error="invalid_token", '
                f'error_description="{exc.message}"'
            }
        if isinstance(exc, LostRace) and not _is_fhir(request):
            # 409 with the record as it is now: the client shows it instead of a bare refusal.
            body = {
                "detail": exc.message,
                "changed_by": exc.actor,
                "changed_action": exc.action,
                "current": jsonable_encoder(exc.current),
            }
            version = exc.current.get("version")
            return JSONResponse(
                body, 409, headers={"ETag": f'"{version}"'} if version is not None else None
            )
        return error_response(
            request, exc.status_code, exc.code, exc.message, exc.location, headers, exc.problems
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        location = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}"
            for e in errors[:10]
        )
        if _is_fhir(request):
            issues = [
                _issue(
                    "invalid",
                    str(e.get("msg")),
                    ".".join(str(p) for p in e.get("loc", ()) if p != "body") or None,
                )
                for e in errors[:20]
            ]
            return JSONResponse(operation_outcome(issues), 422, media_type=FHIR_JSON)
        status = 400 if _is_v2(request) else 422
        return error_response(request, status, "invalid", message, location)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(
            request,
            exc.status_code,
            "not-found" if exc.status_code == 404 else "exception",
            str(exc.detail),
            None,
            getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "exception", "internal error; it has been logged")
