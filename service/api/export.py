"""FHIR Bulk Data Access (HL7 IG 2.0): kick-off, status and file routes for the pseudonymised
export of service.domain.export. Routes only translate HTTP; the job runs in a thread."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from service.api.deps import ERRORS, NOT_FOUND
from service.api.errors import FHIR_JSON
from service.domain.export import ExportService, parse_request
from service.errors import NotFound
from service.fhir import bulk
from service.security.deps import CurrentPrincipal

router = APIRouter(prefix="/fhir", tags=["bulk data"], responses={**ERRORS, **NOT_FOUND})

_OUTCOME = {
    "content": {FHIR_JSON: {"schema": {"type": "object"}}},
    "description": "OperationOutcome naming the bad parameter",
}
_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "Prefer",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "example": "respond-async"},
    },
    {
        "name": "recipient",
        "in": "query",
        "required": True,
        "schema": {"type": "string"},
        "description": "the registry or research project the data is released to",
    },
    {"name": "purpose", "in": "query", "required": True, "schema": {"type": "string"}},
    {
        "name": "legalBasis",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "enum": ["helseregisterloven", "consent", "rek-approval"]},
    },
    {
        "name": "legalBasisReference",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "e.g. the REK case number (required with rek-approval)",
    },
    {
        "name": "_type",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "comma-separated: " + ", ".join(bulk.EXPORT_TYPES),
    },
    {
        "name": "_since",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "format": "date-time"},
    },
    {"name": "_outputFormat", "in": "query", "required": False, "schema": {"type": "string"}},
]
_KICK_OFF: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted; Content-Location is the status URL"},
    400: _OUTCOME,
    503: _OUTCOME,
}


def _service(request: Request) -> ExportService:
    service: ExportService = request.app.state.exports  # built in the lifespan
    return service


def _base(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/fhir"


def _kick_off(request: Request, principal: Any, group: str | None) -> Response:
    export = parse_request(dict(request.query_params), request.headers.get("prefer"), group)
    job_id = _service(request).kick_off(principal, export, str(request.url), _base(request))
    return Response(
        status_code=202,
        headers={"Content-Location": f"{_base(request)}/bulk-status/{job_id}"},
    )


@router.get(
    "/$export",
    name="fhir_export",
    status_code=202,
    response_class=Response,
    responses=_KICK_OFF,
    openapi_extra={"parameters": _PARAMETERS},
)
def fhir_export(request: Request, principal: CurrentPrincipal) -> Response:
    """System-level export of the caller's organisation (pseudonymised, k-anonymous)."""
    return _kick_off(request, principal, None)


@router.get(
    "/Group/{group_id}/$export",
    name="fhir_group_export",
    status_code=202,
    response_class=Response,
    responses=_KICK_OFF,
    openapi_extra={"parameters": _PARAMETERS},
)
def fhir_group_export(group_id: str, request: Request, principal: CurrentPrincipal) -> Response:
    """Export of one group: ``pathway.<pathway id>`` or ``unit.<unit id>``."""
    return _kick_off(request, principal, group_id)


@router.get(
    "/bulk-status/{job_id}",
    name="fhir_export_status",
    response_class=JSONResponse,
    responses={
        200: {"description": "the completion manifest"},
        202: {"description": "in progress"},
    },
)
def fhir_export_status(job_id: str, request: Request, principal: CurrentPrincipal) -> Response:
    """202 with X-Progress while running; 200 with the manifest when done; 500 with an
    OperationOutcome if the job failed (the IG's way of saying the export itself failed)."""
    job = _service(request).status(principal, job_id)
    if job.state == "in-progress":
        return Response(
            status_code=202,
            headers={"X-Progress": job.progress or "in progress", "Retry-After": "2"},
        )
    if job.state == "failed":
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "error", "code": "exception", "diagnostics": job.error or "failed"}
            ],
        }
        return JSONResponse(outcome, status_code=500, media_type=FHIR_JSON)
    return JSONResponse(job.manifest, status_code=200, headers={"Expires": _expires(job)})


def _expires(job: Any) -> str:
    from datetime import UTC, timedelta
    from email.utils import format_datetime

    moment = job.finished_at or job.requested_at
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return format_datetime(moment + timedelta(days=7), usegmt=True)


@router.get(
    "/bulk-files/{job_id}/{file_name}",
    name="fhir_export_file",
    response_class=PlainTextResponse,
    responses={200: {"content": {bulk.NDJSON: {}}, "description": "an NDJSON file"}},
)
def fhir_export_file(
    job_id: str, file_name: str, request: Request, principal: CurrentPrincipal
) -> Response:
    """One NDJSON file of a finished export, to the client that asked for it."""
    if not file_name.endswith(".ndjson"):
        raise NotFound(f"file {file_name} not found")
    content = _service(request).file(principal, job_id, file_name)
    return Response(content, media_type=bulk.NDJSON)
