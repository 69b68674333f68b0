"""HL7 CDS Hooks 2.0: a `patient-view` service that shows the home follow-up risk inside DIPS.

DIPS (the CDS client) calls `POST /cds-services/{id}` when a clinician opens a patient's chart; we
answer with at most one card built from the patient's latest assessment and open worklist item,
and with no card when there is nothing to say. DIPS knows the patient by its own FHIR id, so the
service asks for the `patient` prefetch and matches the fødselsnummer/D-number in it when the
context id is not one of ours.

Status codes (CDS Hooks 2.0, "HTTP Status Codes"): 200 with cards (possibly none); 400 for a
malformed request or a hook the service does not answer; 404 for an unknown service id; 412
Precondition Failed when the patient cannot be identified (neither our id nor a usable `patient`
prefetch). Callers present our bearer JWT (HelseID); see service/security/policy.py for roles.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session, defer
from starlette.concurrency import run_in_threadpool

from models.artifact import MODEL_CARD_FILE
from models.identifiers import DNR_SYSTEM, FNR_SYSTEM
from service.api.deps import ERRORS
from service.db.tables import Assessment, Patient, WorklistItem
from service.domain.worklist import ACTIVE_STATES
from service.errors import BadRequest, InvalidInput, NotFound, TriageError
from service.fhir import outputs
from service.security import visibility
from service.security.deps import current_principal
from service.security.principal import Principal

router = APIRouter(prefix="/cds-services", tags=["cds-hooks"], responses=ERRORS)

SERVICE_ID = "home-followup-risk"
HOOK = "patient-view"
CODE_SYSTEM = outputs.CODE_SYSTEM
SUMMARY_MAX_CHARS = 139  # the specification: "<140-character summary"
# Triage level -> CDS Hooks indicator (info < warning < critical) and the words on the card.
INDICATOR = {"red": "critical", "yellow": "warning", "green": "info"}
LEVEL_WORDS_NN = {"red": "Høg", "yellow": "Moderat", "green": "Låg"}
STATE_WORDS_NN = {
    "open": "open, ikkje kvittert",
    "acknowledged": "kvittert",
    "escalated": "eskalert",
    "resolved": "avslutta",
}
# Web pages (service/web) that show the item and the patient; the worklist anchors each item.
WORKLIST_ITEM_PATH = "web/worklist#item-{item_id}"
PATIENT_PAGE_PATH = "web/patients/{patient_id}"
CARD_NAMESPACE = uuid.UUID("6f1c8c8e-5b7e-4d5e-9a59-2f1f3c7d0a11")
# CDS Hooks 2.0 card.overrideReasons: why a clinician may dismiss the card; the client sends the
# chosen one back in feedback (POST /cds-services/{id}/feedback).
OVERRIDE_REASON_SYSTEM = f"{outputs.CODE_SYSTEM}/cds-override-reason"
OVERRIDE_REASONS = (
    ("already-followed-up", "Pasienten er alt følgd opp"),
    ("measurement-error", "Målefeil eller feil pasient"),
    ("known-baseline", "Kjent tilstand, forventa verdiar for pasienten"),
    ("not-relevant-now", "Ikkje relevant no"),
)


class PreconditionFailed(TriageError):
    """CDS Hooks: the service cannot get the data it needs (here: which patient this is)."""

    status_code = 412
    code = "not-found"


# ---- the request, as the specification defines it -----------------------------------------


class FhirAuthorization(BaseModel):
    access_token: str = Field(min_length=1)
    token_type: Literal["Bearer"]
    expires_in: int = Field(ge=0)
    scope: str
    subject: str
    patient: str | None = None


class PatientViewContext(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: str = Field(  # the specification names fields in camelCase
        pattern=r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$",
        description="Practitioner/{id}, PractitionerRole/{id}, Patient/{id} or RelatedPerson/{id}",
    )
    patientId: str = Field(
        pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="FHIR id of the patient in the chart"
    )
    encounterId: str | None = None


class CdsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    hook: str
    hookInstance: uuid.UUID
    fhirServer: AnyHttpUrl | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: PatientViewContext
    prefetch: dict[str, Any] | None = None

    @model_validator(mode="after")
    def authorization_needs_server(self) -> CdsRequest:
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirServer is required when fhirAuthorization is given")
        return self


# ---- response shapes (for the OpenAPI description; the builders below emit plain dicts) ----


class CdsService(BaseModel):
    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str]
    usageRequirements: str


class CdsDiscovery(BaseModel):
    services: list[CdsService]


class CardSource(BaseModel):
    label: str
    url: str | None = None
    topic: dict[str, str] | None = None


class CardLink(BaseModel):
    label: str
    url: str
    type: Literal["absolute", "smart"]


class Card(BaseModel):
    uuid: str | None = None
    summary: str = Field(max_length=139)
    detail: str | None = Field(None, description="GitHub-flavoured Markdown")
    indicator: Literal["info", "warning", "critical"]
    source: CardSource
    links: list[CardLink] | None = None
    overrideReasons: list[dict[str, str]] | None = None


class CdsResponse(BaseModel):
    cards: list[Card]


# ---- discovery ----------------------------------------------------------------------------


def discovery_document() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": HOOK,
                "id": SERVICE_ID,
                "title": "Digital heimeoppfølging: risiko for forverring",
                "description": "Risiko for forverring innan 72 timar frå heimemålingar og "
                "spørjeskjema, med forklaring og utløyste reglar, og pasienten si "
                "oppgåve i arbeidslista.",
                "prefetch": {"patient": "Patient/{{context.patientId}}"},
                "usageRequirements": "Bearer token (HelseID) with the clinician or integration role. "
                "The `patient` prefetch lets the service match the patient by "
                "fødselsnummer or D-number.",
            }
        ]
    }


@router.get(
    "", name="cds_discovery", response_class=JSONResponse, responses={200: {"model": CdsDiscovery}}
)
def cds_discovery() -> JSONResponse:
    """CDS Hooks discovery: the services this server offers, with their prefetch templates."""
    return JSONResponse(discovery_document())


# ---- cards (plain functions: no HTTP) -------------------------------------------------------


@dataclass
class CardInputs:
    assessment: Assessment
    item: WorklistItem | None


def _identifier_values(patient_resource: Any) -> list[str]:
    if not isinstance(patient_resource, dict) or patient_resource.get("resourceType") != "Patient":
        return []
    identifiers = patient_resource.get("identifier") or []
    if not isinstance(identifiers, list):
        raise InvalidInput(
            "prefetch.patient.identifier must be an array of Identifier objects",
            location="prefetch.patient.identifier",
        )
    for i, identifier in enumerate(identifiers):
        value = identifier.get("value") if isinstance(identifier, dict) else None
        if not isinstance(identifier, dict) or (value is not None and not isinstance(value, str)):
            raise InvalidInput(
                "prefetch.patient.identifier entries must be Identifier objects whose value is "
                "a string",
                location=f"prefetch.patient.identifier[{i}].value",
            )
    return [
        i["value"]
        for i in identifiers
        if i.get("system") in (FNR_SYSTEM, DNR_SYSTEM)
        # A person number is 11 digits; anything else cannot match (and a NUL byte would
        # make PostgreSQL refuse the query).
        and len(i.get("value") or "") == 11
        and i["value"].isascii()
        and i["value"].isdigit()
    ]


def resolve_patient(
    session: Session, principal: Principal, patient_id: str, prefetch: dict[str, Any] | None
) -> Patient | None:
    """Our patient for the chart; None when the chart's patient is not in home follow-up.

    Raises PreconditionFailed when the patient cannot be identified at all.
    """
    patient = session.get(Patient, patient_id)
    if patient is not None:
        return patient if visibility.may_read_patient(principal, patient) else None
    prefetched = (prefetch or {}).get("patient")
    if prefetched is None:
        raise PreconditionFailed(
            f"Patient/{patient_id} is not a patient id of this service, and the request has no "
            "'patient' prefetch to match the person by fødselsnummer or D-number"
        )
    values = _identifier_values(prefetched)
    if not values:
        raise PreconditionFailed(
            "the 'patient' prefetch holds no Patient with a fødselsnummer or D-number identifier "
            f"({FNR_SYSTEM} or {DNR_SYSTEM})"
        )
    patient = session.scalar(select(Patient).where(Patient.identifier_value.in_(values)))
    if patient is None or not visibility.may_read_patient(principal, patient):
        return None  # a person who is not in (the caller's) home follow-up: nothing to say
    return patient


@cache
def _card_queries() -> tuple[Select[Any], Select[Any]]:
    """Built once: constructing statements costs more than running them on this hot path."""
    latest = (
        select(Assessment)
        .where(Assessment.patient_id == bindparam("patient_id"))
        # the card needs the explanation, not the input snapshot or the long basis list
        .options(defer(Assessment.features), defer(Assessment.basis))
        .order_by(Assessment.created_at.desc(), Assessment.id.desc())
        .limit(1)
    )
    active = select(WorklistItem).where(
        WorklistItem.patient_id == bindparam("patient_id"), WorklistItem.state.in_(ACTIVE_STATES)
    )
    return latest, active


def load_card_inputs(session: Session, patient: Patient) -> CardInputs | None:
    latest, active = _card_queries()
    assessment = session.scalar(latest, {"patient_id": patient.id})
    if assessment is None:
        return None
    return CardInputs(assessment, session.scalar(active, {"patient_id": patient.id}))


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_MD_ESCAPES = str.maketrans({c: "\\" + c for c in "\\`*_[]<>#|"})


def _md(text: str) -> str:
    """Escape the Markdown characters that could turn a factor text into markup."""
    return text.translate(_MD_ESCAPES)


def _iso(dt: datetime) -> str:
    aware = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def summary_text(
    level: str, probability: float | None, reason: str | None, by_rule: bool = False
) -> str:
    """E.g. "Høg risiko for forverring (0.82) – SpO2 under personleg baseline".

    When a pathway rule set the level, the reason is the rule and the probability is labelled as
    the model's, so a red card with a low model score does not read as a contradiction.
    """
    head = f"{LEVEL_WORDS_NN.get(level, 'Moderat')} risiko for forverring"
    if probability is not None:
        head += f" (modell {probability:.2f})" if by_rule else f" ({probability:.2f})"
    if not reason:
        return _fit(head, SUMMARY_MAX_CHARS)
    return _fit(f"{head} – {reason}", SUMMARY_MAX_CHARS)


def detail_markdown(inputs: CardInputs) -> str:
    a, item = inputs.assessment, inputs.item
    explanation = a.explanation or {}
    lines = [
        "**Risiko for forverring innan 72 timar:** "
        + (f"{a.probability:.2f} " if a.probability is not None else "")
        + f"({LEVEL_WORDS_NN.get(a.level, a.level).lower()}, nivå {a.level}), "
        f"vurdert {_iso(a.as_of)} med modell `{a.model_name} {a.model_version}`.",
        "",
    ]
    top = explanation.get("top_factors") or []
    if top:
        lines.append("**Viktigaste faktorar**")
        lines += [
            f"- {'↑' if f.get('contribution', 0) > 0 else '↓'} {_md(str(f['text_nb']))} "
            f"(bidrag {f.get('contribution', 0):+.2f})"
            for f in top[:5]
        ]
        lines.append("")
    rules = explanation.get("rules") or []
    if rules:
        lines.append("**Reglar som slo ut**")
        lines += [f"- {_md(str(r.get('text_nb') or r.get('rule', '')))}" for r in rules]
        lines.append("")
    if item is not None:
        lines.append(
            f"**Arbeidsliste:** {STATE_WORDS_NN.get(item.state, item.state)}, "
            f"opna {_iso(item.opened_at)}."
        )
        lines.append("")
    lines.append(
        "_Modellen er trena på syntetiske data; vurderinga er beslutningsstøtte, "
        "ikkje ei diagnose._"
    )
    return "\n".join(lines)


def build_cards(inputs: CardInputs | None, base_url: str) -> list[dict[str, Any]]:
    """Zero or one card: nothing when there is no assessment, or all is green and no item."""
    if inputs is None:
        return []
    a, item = inputs.assessment, inputs.item
    rules = (a.explanation or {}).get("rules") or []
    if item is None and a.level == "green" and not rules:
        return []
    top = (a.explanation or {}).get("top_factors") or []
    if rules:
        reason = str(rules[0].get("text_nb") or rules[0].get("rule") or "")
    else:
        reason = str(top[0]["text_nb"]) if top else ""
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid5(CARD_NAMESPACE, f"{a.id}:{item.id if item else ''}")),
        "summary": summary_text(a.level, a.probability, reason, by_rule=bool(rules)),
        "indicator": INDICATOR.get(a.level, "warning"),
        "detail": detail_markdown(inputs),
        "source": {
            "label": f"Digital heimeoppfølging ({a.model_name} {a.model_version})",
            "url": f"{base_url}cds-services/model-card",
            "topic": {
                "system": f"{CODE_SYSTEM}/cds-topic",
                "code": "deterioration-risk",
                "display": "Risiko for forverring",
            },
        },
    }
    links = [
        {
            "label": "Opne pasienten",
            "type": "absolute",
            "url": base_url + PATIENT_PAGE_PATH.format(patient_id=a.patient_id),
        }
    ]
    if item is not None:
        links.insert(
            0,
            {
                "label": "Opne i arbeidslista",
                "type": "absolute",
                "url": base_url + WORKLIST_ITEM_PATH.format(item_id=item.id),
            },
        )
    card["links"] = links
    card["overrideReasons"] = [
        {"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display}
        for code, display in OVERRIDE_REASONS
    ]
    return [card]


def parse_cds_request(raw: bytes) -> CdsRequest:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("a CDS Hooks request must be a JSON object")
    try:
        return CdsRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(
            f"malformed CDS Hooks request: {where}: {first['msg']}", location=where or None
        ) from exc


# ---- the service call -----------------------------------------------------------------------

_CALL_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["hook", "hookInstance", "context"],
                    "properties": {
                        "hook": {"const": HOOK},
                        "hookInstance": {"type": "string", "format": "uuid"},
                        "fhirServer": {"type": "string", "format": "uri"},
                        "fhirAuthorization": {
                            "type": "object",
                            "required": [
                                "access_token",
                                "token_type",
                                "expires_in",
                                "scope",
                                "subject",
                            ],
                        },
                        "context": {
                            "type": "object",
                            "required": ["userId", "patientId"],
                            "properties": {
                                "userId": {"type": "string", "example": "Practitioner/123"},
                                "patientId": {"type": "string"},
                                "encounterId": {"type": "string"},
                            },
                        },
                        "prefetch": {
                            "type": "object",
                            "properties": {"patient": {"type": "object"}},
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/{service_id}",
    name="cds_service_call",
    response_class=JSONResponse,
    openapi_extra=_CALL_BODY,
    responses={
        200: {"model": CdsResponse, "description": "Cards, possibly none"},
        400: {"description": "Malformed request or wrong hook"},
        404: {"description": "Unknown CDS service id"},
        412: {"description": "The patient cannot be identified: send the 'patient' prefetch"},
    },
)
async def cds_service_call(service_id: str, request: Request) -> JSONResponse:
    """Cards for the patient in the chart (patient-view)."""
    # Called, not injected: FastAPI runs a sync dependency in a worker thread, one more hop.
    principal = current_principal(request)
    if service_id != SERVICE_ID:
        raise NotFound(f"no CDS service '{service_id}'; GET /cds-services lists '{SERVICE_ID}'")
    call = parse_cds_request(await request.body())
    if call.hook != HOOK:
        raise BadRequest(
            f"service '{SERVICE_ID}' answers the '{HOOK}' hook, not '{call.hook}'", location="hook"
        )

    prefetch = dict(call.prefetch or {})
    if "patient" not in prefetch and call.fhirAuthorization is not None:
        # What prefetch lacks, fetched with the client's fhirAuthorization (CDS Hooks 2.0
        # "FHIR Resource Access") - only when the chart's patient id is not already ours.
        def known() -> bool:
            with request.app.state.sessions() as session:
                return session.get(Patient, call.context.patientId) is not None

        if not await run_in_threadpool(known):
            prefetch["patient"] = await fetch_patient(
                request.app.state.settings, call, call.context.patientId
            )

    def answer() -> list[dict[str, Any]]:
        # One thread hop for all the database work (a session dependency would add two more).
        with request.app.state.sessions() as session:
            patient = resolve_patient(session, principal, call.context.patientId, prefetch)
            inputs = load_card_inputs(session, patient) if patient is not None else None
            return build_cards(inputs, str(request.base_url))

    return JSONResponse({"cards": await run_in_threadpool(answer)})


async def fetch_patient(settings: Any, call: CdsRequest, patient_id: str) -> dict[str, Any]:
    """GET {fhirServer}/Patient/{id} with the request's access token; 412 when that fails."""
    import httpx

    server = str(call.fhirServer).rstrip("/")
    trusted = [s.rstrip("/") for s in settings.cds_fhir_servers]
    if server not in trusted:
        raise PreconditionFailed(
            "the 'patient' prefetch is missing and fhirServer is not a FHIR server this service "
            "may call (TRIAGE_CDS_FHIR_SERVERS)"
        )
    assert call.fhirAuthorization is not None
    headers = {
        "Authorization": f"Bearer {call.fhirAuthorization.access_token}",
        "Accept": "application/fhir+json",
    }
    try:
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as http:
            response = await http.get(f"{server}/Patient/{patient_id}", headers=headers)
    except httpx.HTTPError as exc:
        raise PreconditionFailed(
            f"the patient could not be fetched from fhirServer: {type(exc).__name__}"
        ) from exc
    if response.status_code != 200:
        raise PreconditionFailed(
            f"fhirServer answered {response.status_code} to Patient/{patient_id}"
        )
    try:
        resource = response.json()
    except ValueError as exc:
        raise PreconditionFailed("fhirServer's Patient is not JSON") from exc
    if not isinstance(resource, dict):
        raise PreconditionFailed("fhirServer's Patient is not a resource")
    return resource


@router.get(
    "/model-card",
    name="cds_model_card",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/markdown": {}}}},
)
def cds_model_card(request: Request) -> PlainTextResponse:
    """The model card of the model in service (the `source.url` of every card): public, so a
    clinician's browser opens it from the card without a token."""
    model = request.app.state.models.current().model
    path = model.folder / MODEL_CARD_FILE
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        manifest = model.manifest
        text = (
            f"# {model.name} {model.version}\n\n"
            "No model card ships with this artifact; the manifest says:\n\n"
            f"```json\n{json.dumps(manifest.__dict__ if manifest else {}, indent=2)}\n```\n\n"
            "Performance figures, where shown, are on synthetic data.\n"
        )
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


# ---- feedback (CDS Hooks 2.0 "Feedback") ------------------------------------------------------


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="allow")

    reason: dict[str, Any] | None = None  # a Coding from the card's overrideReasons
    userComment: str | None = Field(None, max_length=2000)


class CardFeedback(BaseModel):
    model_config = ConfigDict(extra="allow")

    card: str = Field(min_length=1, max_length=64, description="The card's uuid")
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime


class FeedbackRequest(BaseModel):
    feedback: list[CardFeedback] = Field(min_length=1, max_length=100)


@router.post(
    "/{service_id}/feedback",
    name="cds_feedback",
    status_code=200,
    responses={
        200: {"description": "Stored"},
        400: {"description": "Malformed feedback"},
        404: {"description": "Unknown CDS service id"},
    },
)
async def cds_feedback(service_id: str, request: Request) -> JSONResponse:
    """Whether the clinician accepted or overrode each card (and why); stored and audited."""
    from service.db.engine import transaction
    from service.db.tables import CdsFeedback
    from service.domain.free_text import refuse_person_number

    principal = current_principal(request)
    if service_id != SERVICE_ID:
        raise NotFound(f"no CDS service '{service_id}'; GET /cds-services lists '{SERVICE_ID}'")
    try:
        body = FeedbackRequest.model_validate(json.loads(await request.body()))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"malformed feedback: {where}: {first['msg']}", location=where) from exc
    allowed = {code for code, _ in OVERRIDE_REASONS}
    for i, item in enumerate(body.feedback):
        reason = item.overrideReason
        if item.outcome == "overridden" and reason is not None and reason.reason is not None:
            code = reason.reason.get("code")
            if reason.reason.get("system") != OVERRIDE_REASON_SYSTEM or code not in allowed:
                raise BadRequest(
                    "overrideReason.reason must be one of the card's overrideReasons",
                    location=f"feedback.{i}.overrideReason.reason",
                )
        if reason is not None:
            # Free text goes into the record: never a person number in it.
            refuse_person_number(reason.userComment, f"feedback.{i}.overrideReason.userComment")

    def store() -> int:
        now = datetime.now(UTC)
        with transaction(request.app.state.sessions) as session:
            for item in body.feedback:
                reason = item.overrideReason
                session.add(
                    CdsFeedback(
                        id=str(uuid.uuid4()),
                        service_id=service_id,
                        card=item.card,
                        outcome=item.outcome,
                        accepted_suggestions=item.acceptedSuggestions,
                        override_reason=reason.reason if reason else None,
                        user_comment=reason.userComment if reason else None,
                        outcome_at=item.outcomeTimestamp,
                        received_at=now,
                        received_by=principal.subject,
                        organisation=principal.organisation,
                    )
                )
        return len(body.feedback)

    stored = await run_in_threadpool(store)
    return JSONResponse({"stored": stored})
