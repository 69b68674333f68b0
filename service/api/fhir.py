"""FHIR R4 endpoints: ingestion (resource, batch, transaction) and the searches DIPS reads."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.deps import ERRORS, ServicesDep
from service.api.errors import FHIR_JSON
from service.errors import BadRequest, InvalidInput, PreconditionFailed, UnsupportedMediaType
from service.fhir import outputs, search
from service.security.deps import CurrentPrincipal
from service.security.principal import Principal

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
    """CapabilityStatement: what this server accepts and searches, derived from its routes."""
    return _fhir(search.capability_statement(fhir_base(request), "0.1.0", fhir_routes(request.app)))


def fhir_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every FHIR route the app serves."""
    from service.security.policy import iter_routes

    return [
        (method, route.path)
        for route in iter_routes(app)
        if route.path == "/fhir" or route.path.startswith("/fhir/")
        for method in route.methods
    ]


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
    criteria = request.headers.get("if-none-exist")
    if criteria is not None:
        # Conditional create (FHIR R4 §3.1.0.8.1): one match -> 200 with it, nothing created;
        # several -> 412; none -> an ordinary create.
        matches = await _in_thread(services.ingestion.conditional_matches, rtype, criteria)
        if len(matches) > 1:
            raise PreconditionFailed(
                f"If-None-Exist matches {len(matches)} resources", location="If-None-Exist"
            )
        if matches:
            return _read_response(request, principal, rtype, matches[0])
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


# ---- read and search -------------------------------------------------------------------


def _read_response(
    request: Request, principal: Principal, resource_type: str, resource_id: str
) -> JSONResponse:
    with request.app.state.sessions() as session:
        resource = search.FhirReader(session, principal).read(resource_type, resource_id)
    _audit_patients(request, resource)
    meta = resource["meta"]
    return _fhir(
        resource,
        headers={
            "ETag": f'W/"{meta["versionId"]}"',
            "Last-Modified": outputs.http_date(meta["lastUpdated"]),
        },
    )


def _audit_patients(request: Request, *resources: dict[str, Any]) -> None:
    """Tell the audit trail whose record was read (a read by id names no patient in its URL)."""
    pids = set(getattr(request.state, "audit_patient_ids", ()) or ())
    for r in resources:
        if r.get("resourceType") == "Patient":
            pids.add(r["id"])
        for key in ("subject", "for", "patient"):
            ref = (r.get(key) or {}).get("reference", "")
            if ref.startswith("Patient/"):
                pids.add(ref.removeprefix("Patient/"))
    request.state.audit_patient_ids = sorted(pids)


def _reader(resource_type: str) -> Any:
    def read(resource_id: str, request: Request, principal: CurrentPrincipal) -> JSONResponse:
        return _read_response(request, principal, resource_type, resource_id)

    read.__doc__ = f"Read {resource_type}/{{id}}: the current version, with its ETag."
    return read


for _type in search.READABLE:
    router.add_api_route(
        f"/{_type}/{{resource_id}}",
        _reader(_type),
        methods=["GET"],
        name=f"fhir_read_{_type.lower()}",
        response_class=JSONResponse,
        responses={404: _OUTCOME},
    )


def _search_response(request: Request, principal: Principal, resource_type: str) -> JSONResponse:
    strict = search.strict_handling(request.headers.get("prefer"))
    parsed = search.parse_search(resource_type, list(request.query_params.multi_items()), strict)
    with request.app.state.sessions() as session:
        reader = search.FhirReader(session, principal)
        page = reader.search(parsed)
        named = reader.patient_ids_of_identifier(parsed)
    request.state.audit_patient_ids = sorted(named | page.patient_ids)
    bundle = search.searchset(fhir_base(request), parsed, page)
    if parsed.ignored:
        # Lenient handling: say what was not applied (the self link leaves it out too).
        bundle["entry"].append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "warning",
                            "code": "not-supported",
                            "diagnostics": f"search parameter '{name}' was ignored",
                            "expression": [name],
                        }
                        for name in parsed.ignored
                    ],
                },
                "search": {"mode": "outcome"},
            }
        )
    return _fhir(bundle)


_SEARCH_DOC = {
    "RiskAssessment": "The patients' risk assessments, newest first.",
    "Task": "The worklist as Task resources, in priority order.",
    "DetectedIssue": "Threshold alerts (fired rules) from the assessments, newest first.",
}


def _searcher(resource_type: str) -> Any:
    def run(request: Request, principal: CurrentPrincipal) -> JSONResponse:
        return _search_response(request, principal, resource_type)

    params = ", ".join(sorted(search.PARAMETERS[resource_type]))
    run.__doc__ = (
        f"{_SEARCH_DOC[resource_type]} Parameters: {params}, _lastUpdated, _count, _include. "
        "Prefer: handling=strict refuses unknown parameters (400)."
    )
    return run


_SEARCH_NAMES = {
    "RiskAssessment": "fhir_search_risk_assessment",
    "Task": "fhir_search_task",
    "DetectedIssue": "fhir_search_detected_issue",
}
for _type, _name in _SEARCH_NAMES.items():
    router.add_api_route(
        f"/{_type}",
        _searcher(_type),
        methods=["GET"],
        name=_name,
        response_class=JSONResponse,
        responses=_FHIR_ERRORS,
    )
