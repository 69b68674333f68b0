"""FHIR R4 endpoints: ingestion (resource, batch, transaction) and the searches DIPS reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from service.api.deps import ERRORS, ReadSession, ServicesDep
from service.api.errors import FHIR_JSON
from service.db.tables import Assessment, IngestedResource, Patient, WorklistItem
from service.errors import BadRequest, InvalidInput, UnsupportedMediaType
from service.fhir import outputs
from service.security.deps import CurrentPrincipal
from service.security.principal import Principal
from service.security.visibility import patient_filter

router = APIRouter(prefix="/fhir", tags=["fhir"], responses=ERRORS)

ACCEPTED_TYPES = ("application/fhir+json", "application/json")
DEFAULT_COUNT, MAX_COUNT = 50, 500
_OUTCOME = {
    "content": {FHIR_JSON: {"schema": {"type": "object"}}},
    "description": "OperationOutcome naming the bad element",
}
_FHIR_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _OUTCOME,
    409: _OUTCOME,
    413: _OUTCOME,
    415: _OUTCOME,
    422: _OUTCOME,
}


def _body_spec(description: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string"}},
    }
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {FHIR_JSON: {"schema": schema}, "application/json": {"schema": schema}},
        }
    }


async def read_fhir_json(request: Request) -> Any:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        raise UnsupportedMediaType("Content-Type must be application/fhir+json")
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    # Nesting depth and size were already limited by the input guard (service.security).
    return data


def _fhir(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


@router.get("/metadata", name="fhir_metadata", response_class=JSONResponse)
def fhir_metadata(request: Request) -> JSONResponse:
    """CapabilityStatement: what this server accepts and searches."""
    return _fhir(outputs.capability_statement(str(request.base_url) + "fhir", "0.1.0"))


@router.post(
    "",
    name="fhir_bundle",
    response_class=JSONResponse,
    openapi_extra=_body_spec("Bundle of type batch or transaction"),
    responses={200: {"description": "batch-response or transaction-response"}, **_FHIR_ERRORS},
)
async def fhir_bundle(
    request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> JSONResponse:
    """A batch (each entry stands alone) or a transaction (all or nothing)."""
    body = await read_fhir_json(request)
    result = await _in_thread(services.ingestion.ingest_bundle, principal, body)
    base = fhir_base(request)
    for entry in result.get("entry", []):
        location = (entry.get("response") or {}).get("location")
        if location:
            # fullUrl: the absolute URL of the resource (without the version), as FHIR asks.
            rtype, rid = location.split("/")[:2]
            entry["fullUrl"] = f"{base}/{rtype}/{rid}"
    return _fhir(result)


def fhir_base(request: Request) -> str:
    """The absolute base of this FHIR server, e.g. https://triage.example/fhir."""
    return f"{str(request.base_url).rstrip('/')}/fhir"


async def _in_thread(fn: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


async def _create(
    request: Request, principal: Principal, services: Any, rtype: str
) -> JSONResponse:
    body = await read_fhir_json(request)
    if isinstance(body, dict) and body.get("resourceType") != rtype:
        raise InvalidInput(
            f"resourceType must be {rtype} on this endpoint", location="resourceType"
        )
    outcome = await _in_thread(services.ingestion.ingest, principal, body)
    # The answer is the resource as stored: the server's id and meta, never the sender's meta.
    stored = outputs.stored_resource(
        body, outcome.resource_id, outcome.version_id, outcome.last_updated
    )
    return _fhir(
        stored,
        outcome.status,
        {
            "Location": f"{fhir_base(request)}/{rtype}/{outcome.resource_id}/_history/"
            f"{outcome.version_id}",
            "ETag": f'W/"{outcome.version_id}"',
            "Last-Modified": outputs.http_date(stored["meta"]["lastUpdated"]),
        },
    )


@router.post(
    "/Observation",
    name="fhir_create_observation",
    response_class=JSONResponse,
    status_code=201,
    openapi_extra=_body_spec("A VKP Observation"),
    responses={200: {"description": "Already received (retry)"}, **_FHIR_ERRORS},
)
async def fhir_create_observation(
    request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> JSONResponse:
    """Store a device measurement idempotently and re-score the patient."""
    return await _create(request, principal, services, "Observation")


@router.post(
    "/QuestionnaireResponse",
    name="fhir_create_questionnaire_response",
    response_class=JSONResponse,
    status_code=201,
    openapi_extra=_body_spec("A Helsenorge QuestionnaireResponse"),
    responses={200: {"description": "Already received (retry)"}, **_FHIR_ERRORS},
)
async def fhir_create_questionnaire_response(
    request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> JSONResponse:
    """Store a questionnaire answer idempotently and re-score the patient."""
    return await _create(request, principal, services, "QuestionnaireResponse")


# ---- searches ----------------------------------------------------------------------------


def _patient_id(ref: str | None, name: str) -> str | None:
    if ref is None:
        return None
    pid = ref.removeprefix("Patient/")
    if not pid or "/" in pid:
        raise InvalidInput(f"{name} must be Patient/<id>", location=name)
    return pid


def _last_updated(values: list[str] | None, column: Any) -> list[Any]:
    conditions = []
    for v in values or []:
        prefix, stamp = (v[:2], v[2:]) if v[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", v)
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidInput(
                "_lastUpdated must be a FHIR dateTime with an optional ge/gt/le/lt prefix",
                location="_lastUpdated",
            ) from exc
        # Stored times are UTC (SQLite keeps them as naive UTC text): compare in UTC.
        when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        conditions.append(
            {
                "ge": column >= when,
                "gt": column > when,
                "le": column <= when,
                "lt": column < when,
                "eq": column == when,
            }[prefix]
        )
    return conditions


def _page(
    request: Request, query: Any, session: Any, count: int, offset: int
) -> tuple[list[Any], int, str | None]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.execute(query.limit(count).offset(offset)).all()
    next_url = None
    if offset + count < total:
        # multi_items: a repeated parameter (_lastUpdated=ge..&_lastUpdated=lt..) keeps both.
        params = [
            (k, v) for k, v in request.query_params.multi_items() if k not in ("_count", "_offset")
        ]
        params += [("_count", str(count)), ("_offset", str(offset + count))]
        next_url = str(request.url.replace(query=urlencode(params)))
    return rows, total, next_url


def _assessment_search(
    principal: Principal, patient_id: str | None, last_updated: list[str] | None
) -> Any:
    """Assessments with their patients the caller may see, newest first (stable paging)."""
    query: Any = select(Assessment, Patient).join(Patient, Patient.id == Assessment.patient_id)
    query = query.where(patient_filter(principal))
    if patient_id:
        query = query.where(Assessment.patient_id == patient_id)
    return query.where(*_last_updated(last_updated, Assessment.created_at)).order_by(
        Assessment.created_at.desc(), Assessment.id
    )


@router.get(
    "/RiskAssessment",
    name="fhir_search_risk_assessment",
    response_class=JSONResponse,
    responses=_FHIR_ERRORS,
)
def fhir_search_risk_assessment(
    request: Request,
    principal: CurrentPrincipal,
    session: ReadSession,
    subject: str | None = Query(None, description="Patient/{id}"),
    last_updated: list[str] | None = Query(None, alias="_lastUpdated"),
    count: int = Query(DEFAULT_COUNT, alias="_count", ge=1, le=MAX_COUNT),
    offset: int = Query(0, alias="_offset", ge=0, le=10_000_000),
) -> JSONResponse:
    """The patient's risk assessments, newest first."""
    query = _assessment_search(principal, _patient_id(subject, "subject"), last_updated)
    rows, total, next_url = _page(request, query, session, count, offset)
    basis_ids = {b for a, _ in rows for b in a.basis}
    types = (
        dict(
            session.execute(
                select(IngestedResource.id, IngestedResource.resource_type).where(
                    IngestedResource.id.in_(basis_ids)
                )
            ).all()
        )
        if basis_ids
        else {}
    )
    resources = [outputs.risk_assessment(a, p, types) for a, p in rows]
    return _fhir(outputs.searchset(resources, str(request.url), total, next_url))


@router.get("/Task", name="fhir_search_task", response_class=JSONResponse, responses=_FHIR_ERRORS)
def fhir_search_task(
    request: Request,
    principal: CurrentPrincipal,
    session: ReadSession,
    status: str | None = Query(
        None,
        description="requested | accepted | in-progress | completed (comma-separated for several)",
    ),
    patient: str | None = Query(None, description="Patient/{id}"),
    last_updated: list[str] | None = Query(None, alias="_lastUpdated"),
    count: int = Query(DEFAULT_COUNT, alias="_count", ge=1, le=MAX_COUNT),
    offset: int = Query(0, alias="_offset", ge=0, le=10_000_000),
) -> JSONResponse:
    """The worklist as Task resources, in priority order."""
    query: Any = (
        select(WorklistItem, Patient, Assessment)
        .join(Patient, Patient.id == WorklistItem.patient_id)
        .join(Assessment, Assessment.id == WorklistItem.assessment_id)
    )
    query = query.where(patient_filter(principal))
    if status:
        wanted = [s.strip() for s in status.split(",")]
        unknown = [s for s in wanted if s not in outputs.STATUS_TO_STATE]
        if unknown:
            raise InvalidInput(f"unsupported Task status {unknown[0]!r}", location="status")
        query = query.where(WorklistItem.state.in_([outputs.STATUS_TO_STATE[s] for s in wanted]))
    pid = _patient_id(patient, "patient")
    if pid:
        query = query.where(WorklistItem.patient_id == pid)
    query = query.where(*_last_updated(last_updated, WorklistItem.updated_at)).order_by(
        WorklistItem.level_rank,
        WorklistItem.probability.desc(),
        WorklistItem.opened_at,
        WorklistItem.id,
    )
    rows, total, next_url = _page(request, query, session, count, offset)
    resources = [outputs.task(i, p, a) for i, p, a in rows]
    return _fhir(outputs.searchset(resources, str(request.url), total, next_url))


@router.get(
    "/DetectedIssue",
    name="fhir_search_detected_issue",
    response_class=JSONResponse,
    responses=_FHIR_ERRORS,
)
def fhir_search_detected_issue(
    request: Request,
    principal: CurrentPrincipal,
    session: ReadSession,
    patient: str | None = Query(None, description="Patient/{id}"),
    last_updated: list[str] | None = Query(None, alias="_lastUpdated"),
    count: int = Query(DEFAULT_COUNT, alias="_count", ge=1, le=MAX_COUNT),
    offset: int = Query(0, alias="_offset", ge=0, le=10_000_000),
) -> JSONResponse:
    """Threshold alerts (fired rules) from the patient's assessments, newest first."""
    query = _assessment_search(principal, _patient_id(patient, "patient"), last_updated).where(
        Assessment.level != "green"
    )
    rows, _, next_url = _page(request, query, session, count, offset)
    resources = [issue for a, p in rows for issue in outputs.detected_issues(a, p)]
    return _fhir(outputs.searchset(resources, str(request.url), None, next_url))
