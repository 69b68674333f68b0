"""Pathways as versioned data, the rules dry run, and per-patient threshold overrides."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from models import rules
from models.operating_points import expected_figures
from service.api.deps import (
    ERRORS,
    INVALID,
    NOT_FOUND,
    ReadSession,
    ServicesDep,
    parse_if_match,
)
from service.db.engine import transaction
from service.db.tables import PatientOverride
from service.db.unit_of_work import write
from service.domain.pathways import (
    APPROVED,
    REJECTED,
    InForce,
    PathwayService,
    level_source,
    version_status,
)
from service.errors import Forbidden, InvalidInput
from service.security.deps import CurrentPrincipal
from service.security.principal import Principal
from service.security.visibility import may_read_pathway_scope

router = APIRouter(prefix="/api/v1", tags=["pathways and rules"], responses=ERRORS)

PROBLEMS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid draft: `problems` lists each with its location"}
}


ORGANISATION_QUERY = Query(
    None,
    pattern=r"^\d{9}$",
    description="Resolve for this organisation (default: yours; administrators: the templates)",
)
UNIT_QUERY = Query(None, min_length=1, max_length=64, description="… and this unit")


class PathwaySummary(BaseModel):
    id: str
    version: int
    organisation: str | None = Field(description="Owner of the version in force; null: template")
    unit: str | None
    title_nb: str
    title_en: str
    model: str | None
    measurements: list[str]
    questionnaires: list[str]
    rule_count: int
    hash: str


class PathwayDocument(BaseModel):
    id: str
    version: int
    hash: str
    organisation: str | None = Field(description="Owner of this version; null: regional template")
    unit: str | None
    status: str = Field(description="published | pending | approved | rejected")
    author: str
    reason: str
    created_at: datetime
    decided_by: str | None = Field(description="Who approved or rejected it (four-eyes)")
    pathway: dict[str, Any]
    model_version: str | None = Field(
        default=None, description="The loaded model the operating points below belong to"
    )
    model_operating_points: dict[str, Any] = Field(
        default_factory=dict,
        description="Per level: the named operating point, its threshold for the loaded model, "
        "and what it gave on validation (new alerts per 100 patient-days, event sensitivity, "
        "PPV, 95 % CIs; synthetic data)",
    )
    available_operating_points: dict[str, Any] = Field(
        default_factory=dict,
        description="Every operating point the loaded model carries for this pathway",
    )


class PublishBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pathway: dict[str, Any] = Field(description="The complete pathway document (a draft)")
    reason: str = Field(min_length=3, max_length=1000, description="Why; shown in the history")
    organisation: str | None = Field(
        default=None,
        pattern=r"^\d{9}$",
        description="Publish for this organisation (default: yours); administrators give null "
        "or leave it out for the regional template",
    )
    unit: str | None = Field(
        default=None, min_length=1, max_length=64, description="Only for this unit"
    )


class PublishResult(BaseModel):
    id: str
    version: int
    hash: str
    organisation: str | None
    unit: str | None
    status: str = Field(
        description="published: in force now; pending: a change to thresholds or levels that "
        "scores no one until a second clinician approves it"
    )


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=1000, description="Why; shown in the history")


class DecisionResult(BaseModel):
    id: str
    version: int
    status: str
    organisation: str | None
    unit: str | None
    author: str
    decided_by: str
    decided_at: datetime


class ValidationResult(BaseModel):
    valid: bool
    problems: list[dict[str, str]]


class VersionEntry(BaseModel):
    version: int
    organisation: str | None = Field(description="Owner; null: regional template")
    unit: str | None
    status: str = Field(description="published | pending | approved | rejected")
    in_force: bool = Field(description="The version in force in its own scope")
    needs_approval: bool
    base_version: int | None = Field(description="The version in force when it was proposed")
    author: str
    reason: str
    created_at: datetime
    decided_by: str | None = Field(description="The second clinician who approved or rejected it")
    decision_reason: str | None
    decided_at: datetime | None
    hash: str
    changes: list[dict[str, Any]]


class EvaluateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule_set: str | None = Field(default=None, description="A shipped rule set, e.g. news2")
    pathway: str | dict[str, Any] | None = Field(
        default=None, description="A pathway id, or a draft pathway object"
    )
    values: dict[str, Any] | None = Field(
        default=None, description='Latest values by canonical name, e.g. {"spo2": 95}'
    )
    answers: dict[str, dict[str, Any]] | None = Field(
        default=None, description="{questionnaire id: {linkId: points}}"
    )
    age_years: float | None = Field(default=None, ge=0, le=130)
    options: dict[str, bool] | None = None
    patient_id: str | None = Field(default=None, description="Use this patient's stored data")
    model_probability: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_source(self) -> EvaluateBody:
        if (self.rule_set is None) == (self.pathway is None) and self.patient_id is None:
            raise ValueError("give exactly one of rule_set or pathway (or a patient_id)")
        if (self.values is None) == (self.patient_id is None):
            raise ValueError("give either values or a patient_id")
        return self


class OverrideCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: str = Field(min_length=1, max_length=64, description="Id of the rule to personalise")
    thresholds: dict[str, float] | None = Field(
        default=None, description='New threshold per level, e.g. {"yellow": 86, "red": 84}'
    )
    bands: list[dict[str, Any]] | None = None
    reason: str = Field(min_length=3, max_length=300)
    expires_at: datetime


class OverridePublic(BaseModel):
    id: str
    rule: str
    body: dict[str, Any]
    reason: str
    author: str
    created_at: datetime
    expires_at: datetime
    revoked: bool
    supersedes_id: str | None


def _summary(found: InForce) -> PathwaySummary:
    doc = found.doc
    return PathwaySummary(
        id=doc.id,
        version=found.version,
        organisation=found.organisation,
        unit=found.unit,
        title_nb=doc.title_nb,
        title_en=doc.title_en,
        model=doc.model,
        measurements=[m.measurement for m in doc.measurements],
        questionnaires=[q.id for q in doc.questionnaires],
        rule_count=len(doc.rules),
        hash=found.hash,
    )


def reading_scope(principal: Principal, organisation: str | None) -> str | None:
    """The organisation to resolve for: one's own (admin: the templates, or any named)."""
    if organisation is None:
        return PathwayService.reading_scope(principal)
    if not may_read_pathway_scope(principal, organisation):
        raise Forbidden("you may only read pathways of your own organisation")
    return organisation


@router.get("/pathways", name="list_pathways", response_model=list[PathwaySummary])
def list_pathways(
    session: ReadSession,
    principal: CurrentPrincipal,
    services: ServicesDep,
    organisation: str | None = ORGANISATION_QUERY,
    unit: str | None = UNIT_QUERY,
) -> list[PathwaySummary]:
    """Pathways in force for your organisation (its own versions, else the regional template)."""
    pathways = services.pathways
    scope = reading_scope(principal, organisation)
    return [
        _summary(pathways.in_force(session, pid, scope, unit))
        for pid in sorted(pathways.known_in(session, scope))
    ]


@router.get(
    "/pathways/{pathway_id}",
    name="get_pathway",
    response_model=PathwayDocument,
    responses=NOT_FOUND,
)
def get_pathway(
    pathway_id: str,
    session: ReadSession,
    principal: CurrentPrincipal,
    services: ServicesDep,
    version: int | None = Query(None, ge=1, le=1_000_000),
    organisation: str | None = ORGANISATION_QUERY,
    unit: str | None = UNIT_QUERY,
) -> PathwayDocument:
    """The version in force for your organisation (or any ``version`` you may read)."""
    pathways = services.pathways
    if version is None:
        scope = reading_scope(principal, organisation)
        version = pathways.in_force(session, pathway_id, scope, unit).version
    row = pathways.version_row(session, principal, pathway_id, version)
    decision = pathways.decision_of(session, row)
    doc = rules.as_document(row.body)
    assert isinstance(doc, rules.Pathway)
    return PathwayDocument(
        id=pathway_id,
        version=row.version,
        hash=row.content_hash,
        organisation=row.organisation,
        unit=row.unit,
        status=version_status(row.needs_approval, decision.decision if decision else None),
        author=row.author,
        reason=row.reason,
        created_at=row.created_at,
        decided_by=decision.decided_by if decision else None,
        pathway=row.body,
        **operating_point_summary(doc, services),
    )


@router.put(
    "/pathways/{pathway_id}",
    name="publish_pathway",
    response_model=PublishResult,
    status_code=201,
    responses={
        **PROBLEMS,
        403: {"description": "Not an editor"},
        409: {
            "description": "A proposal awaits approval, or If-Match names a version no longer "
            "in force (the body holds the current version and who published it)"
        },
    },
)
def publish_pathway(
    pathway_id: str,
    body: PublishBody,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    services: ServicesDep,
    if_match: str | None = Header(None, max_length=100),
) -> dict[str, Any]:
    """Publish a new version for your organisation (validated first; on any problem the version
    in force stays).

    Wording changes take effect at once. A change to thresholds or levels is stored as
    ``pending`` and scores no one until a second clinician of the organisation approves it.
    Takes effect for new assessments only; earlier assessments keep the version they used.
    Send the version in force you edited as If-Match ("3"), so a concurrent publish is not
    silently replaced; the answer's ETag is the new version.
    """
    scope: dict[str, Any] = {"unit": body.unit, "expected_version": parse_if_match(if_match)}
    if "organisation" in body.model_fields_set:
        scope["organisation"] = body.organisation

    def work(session: Session) -> dict[str, Any]:
        return services.pathways.publish(
            session, principal, pathway_id, body.pathway, body.reason, **scope
        )

    result = write(request.app.state.sessions, work)
    response.headers["ETag"] = f'"{result["version"]}"'
    return result


def _decide(
    decision: str,
    pathway_id: str,
    version: int,
    body: DecisionBody,
    request: Request,
    principal: Principal,
    services: Any,
) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        return services.pathways.decide(
            session, principal, pathway_id, version, decision, body.reason
        )

    return write(request.app.state.sessions, work)


VersionPath = Annotated[int, Path(ge=1, le=1_000_000, description="The proposed version")]
DECISION_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {"description": "The author, or not an editor of the pathway in its organisation"},
    409: {"description": "Already decided, needs no approval, or the version in force changed"},
}


@router.post(
    "/pathways/{pathway_id}/versions/{version}/approve",
    name="approve_pathway_version",
    response_model=DecisionResult,
    status_code=201,
    responses=DECISION_RESPONSES,
)
def approve_pathway_version(
    pathway_id: str,
    version: VersionPath,
    body: DecisionBody,
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> dict[str, Any]:
    """Four-eyes: a second clinician (not the author) puts a proposed change in force."""
    return _decide(APPROVED, pathway_id, version, body, request, principal, services)


@router.post(
    "/pathways/{pathway_id}/versions/{version}/reject",
    name="reject_pathway_version",
    response_model=DecisionResult,
    status_code=201,
    responses=DECISION_RESPONSES,
)
def reject_pathway_version(
    pathway_id: str,
    version: VersionPath,
    body: DecisionBody,
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> dict[str, Any]:
    """Four-eyes: a second clinician turns a proposed change down; it never scores anyone."""
    return _decide(REJECTED, pathway_id, version, body, request, principal, services)


@router.get(
    "/pathways/{pathway_id}/versions",
    name="list_pathway_versions",
    response_model=list[VersionEntry],
    responses=NOT_FOUND,
)
def list_pathway_versions(
    pathway_id: str, session: ReadSession, principal: CurrentPrincipal, services: ServicesDep
) -> list[dict[str, Any]]:
    """History, newest first: the regional template's and your organisation's versions, each with
    its organisation, author, approver, reason, status and diff."""
    return services.pathways.versions(session, principal, pathway_id)


@router.post("/pathways/validate", name="validate_pathway_draft", response_model=ValidationResult)
def validate_pathway_draft(draft: dict[str, Any], services: ServicesDep) -> ValidationResult:
    """Check a draft without saving: every problem with its location."""
    problems = services.pathways.validate(draft)
    return ValidationResult(valid=not problems, problems=problems)


@router.post("/rules/evaluate", name="evaluate_rules", responses=INVALID)
def evaluate_rules(
    body: EvaluateBody,
    session: ReadSession,
    principal: CurrentPrincipal,
    services: ServicesDep,
    lang: Literal["nb", "en"] = Query("nb", description="Language of `text`"),
) -> dict[str, Any]:
    """Dry run: levels, fired rules and scores for given values or a patient; stores nothing.

    Each fired rule carries ``text`` in the chosen language besides ``text_nb``/``text_en``.
    """
    result = _dry_run(body, session, principal, services)
    for fired in result.get("fired", []):
        fired["text"] = fired.get(f"text_{lang}", "")
    return result


def _dry_run(body: EvaluateBody, session: Any, principal: Any, services: Any) -> dict[str, Any]:
    draft = _document(session, services, body, principal)
    if body.patient_id is not None:
        patient = services.patients.get_visible(session, principal, body.patient_id)
        pathway_doc = draft if isinstance(draft, rules.Pathway) else None
        computed = services.scoring.assess(session, patient, "dry-run", None, pathway_doc)
        session.rollback()
        if computed is None:
            raise InvalidInput("the patient has no data to evaluate", location="patient_id")
        assessment, decision = computed
        summary = operating_point_summary(pathway_doc, services) if pathway_doc else {}
        return {
            **summary,
            "level": assessment.level,
            "probability": assessment.probability,
            "scores": decision.scores,
            "fired": decision.fired,
            "pathway_version": decision.pathway_version,
            "hash": decision.rule_set_hash,
            **decision.evaluation,
            "top_factors": assessment.explanation.get("top_factors", []),
        }
    named = draft
    unresolved: list[str] = []
    if isinstance(draft, rules.Pathway):
        draft, unresolved = services.pathways.with_operating_points(
            draft, None, services.scoring.models.current().points
        )
    try:
        readings = rules.PatientReadings.from_latest_values(
            body.values or {}, age_years=body.age_years, answers=body.answers, options=body.options
        )
        result = rules.evaluate(draft, readings, body.model_probability)
    except rules.ReadingsError as exc:
        raise InvalidInput(str(exc), location="values") from exc
    out = result.to_dict()
    out["level_source"] = level_source(result.decided_by)
    if isinstance(named, rules.Pathway):
        out.update(operating_point_summary(named, services))
        out["operating_points_unresolved"] = unresolved
    return out


def operating_point_summary(doc: rules.Pathway, services: Any) -> dict[str, Any]:
    """What the pathway's model thresholds buy with the loaded model: per level, the expected
    new alerts per 100 patient-days and event sensitivity (validation, synthetic data)."""
    loaded = services.scoring.models.current()
    points = loaded.points
    return {
        "model_version": loaded.model.version,
        "model_operating_points": expected_figures(
            doc.triage.model_thresholds, points.for_pathway(doc.id)
        ),
        "available_operating_points": {
            name: {
                "description": p.get("description"),
                "threshold": p.get("threshold"),
                **{
                    k: p.get("validation", {}).get(k)
                    for k in ("alerts_per_100_patient_days", "event_sensitivity", "ppv")
                },
            }
            for name, p in points.for_pathway(doc.id).items()
        },
    }


def _document(
    session: Any, services: Any, body: EvaluateBody, principal: Principal
) -> rules.Pathway | rules.RuleSet:
    if body.rule_set is not None:
        try:
            return rules.load_rule_set(body.rule_set)
        except (KeyError, FileNotFoundError, ValueError) as exc:
            raise InvalidInput(f"unknown rule set '{body.rule_set}'", location="rule_set") from exc
    if isinstance(body.pathway, str):
        # The version that scores the caller's own patients (admin: the regional template).
        scope = PathwayService.reading_scope(principal)
        return services.pathways.in_force(session, body.pathway, scope).doc
    if isinstance(body.pathway, dict):
        try:
            return rules.as_document(body.pathway)
        except rules.InvalidDocument as exc:
            problems = [p.to_dict() for p in exc.problems]
            raise InvalidInput(
                "the draft pathway is not valid", location=problems[0]["path"], problems=problems
            ) from exc
    patient = services.patients.get_visible(session, principal, body.patient_id)
    return services.pathways.in_force(
        session, patient.pathway_id, patient.organisation, patient.unit
    ).doc


def _override_public(row: PatientOverride) -> OverridePublic:
    return OverridePublic(
        id=row.id,
        rule=str(row.body.get("rule", "")),
        body=row.body,
        reason=row.reason,
        author=row.author,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked=row.revoked,
        supersedes_id=row.supersedes_id,
    )


@router.post(
    "/patients/{patient_id}/overrides",
    name="create_override",
    status_code=201,
    response_model=OverridePublic,
    responses={**NOT_FOUND, **PROBLEMS},
)
def create_override(
    patient_id: str,
    body: OverrideCreate,
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> OverridePublic:
    """A personal threshold for one patient, with reason and expiry (shown in explanations)."""
    with transaction(request.app.state.sessions) as session:
        patient = services.patients.get_visible(session, principal, patient_id)
        change = body.model_dump(include={"rule", "thresholds", "bands"}, exclude_none=True)
        expires = body.expires_at if body.expires_at.tzinfo else body.expires_at.replace(tzinfo=UTC)
        row = services.pathways.add_override(
            session, principal, patient, change, body.reason, expires
        )
        return _override_public(row)


@router.get(
    "/patients/{patient_id}/overrides",
    name="list_overrides",
    response_model=list[OverridePublic],
    responses=NOT_FOUND,
)
def list_overrides(
    patient_id: str, principal: CurrentPrincipal, session: ReadSession, services: ServicesDep
) -> list[OverridePublic]:
    """Every override of the patient, active or not, newest first."""
    from sqlalchemy import select

    services.patients.get_visible(session, principal, patient_id)
    rows = session.scalars(
        select(PatientOverride)
        .where(PatientOverride.patient_id == patient_id)
        .order_by(PatientOverride.created_at.desc())
    )
    return [_override_public(r) for r in rows]


@router.post(
    "/patients/{patient_id}/overrides/{override_id}/revoke",
    name="revoke_override",
    status_code=201,
    response_model=OverridePublic,
    responses=NOT_FOUND,
)
def revoke_override(
    patient_id: str,
    override_id: str,
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> OverridePublic:
    """End an override early: a new record entry that points back to it (nothing is edited)."""
    with transaction(request.app.state.sessions) as session:
        services.patients.get_visible(session, principal, patient_id)
        row = services.pathways.revoke_override(session, principal, patient_id, override_id)
        return _override_public(row)
