"""Pathways as versioned data, the rules dry run, and per-patient threshold overrides."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models import rules
from models.operating_points import expected_figures
from service.api.deps import ERRORS, INVALID, NOT_FOUND, ReadSession, ServicesDep
from service.db.engine import transaction
from service.db.tables import PathwayVersion, Patient, PatientOverride
from service.domain.pathways import level_source
from service.errors import InvalidInput, NotFound
from service.security.deps import CurrentPrincipal

router = APIRouter(prefix="/api/v1", tags=["pathways and rules"], responses=ERRORS)

PROBLEMS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid draft: `problems` lists each with its location"}
}


class PathwaySummary(BaseModel):
    id: str
    version: int
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
    author: str
    reason: str
    created_at: datetime
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


class PublishResult(BaseModel):
    id: str
    version: int
    hash: str


class ValidationResult(BaseModel):
    valid: bool
    problems: list[dict[str, str]]


class VersionEntry(BaseModel):
    version: int
    author: str
    reason: str
    created_at: datetime
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


def _summary(version: int, doc: rules.Pathway, doc_hash: str) -> PathwaySummary:
    return PathwaySummary(
        id=doc.id,
        version=version,
        title_nb=doc.title_nb,
        title_en=doc.title_en,
        model=doc.model,
        measurements=[m.measurement for m in doc.measurements],
        questionnaires=[q.id for q in doc.questionnaires],
        rule_count=len(doc.rules),
        hash=doc_hash,
    )


@router.get("/pathways", name="list_pathways", response_model=list[PathwaySummary])
def list_pathways(session: ReadSession, services: ServicesDep) -> list[PathwaySummary]:
    """Pathways in force, one line each."""
    pathways = services.pathways
    return [_summary(*pathways.current(session, pid)) for pid in sorted(pathways.known_in(session))]


@router.get(
    "/pathways/{pathway_id}",
    name="get_pathway",
    response_model=PathwayDocument,
    responses=NOT_FOUND,
)
def get_pathway(
    pathway_id: str,
    session: ReadSession,
    services: ServicesDep,
    version: int | None = Query(None, ge=1, le=1_000_000),
) -> PathwayDocument:
    """The pathway in force (or an earlier ``version``), as the document clinicians edit."""
    from sqlalchemy import select

    if version is None:
        version, _, _ = services.pathways.current(session, pathway_id)
    row = session.scalar(
        select(PathwayVersion).where(
            PathwayVersion.pathway_id == pathway_id, PathwayVersion.version == version
        )
    )
    if row is None:
        raise NotFound(f"pathway '{pathway_id}' version {version} not found")
    doc = rules.as_document(row.body)
    assert isinstance(doc, rules.Pathway)
    return PathwayDocument(
        id=pathway_id,
        version=row.version,
        hash=row.content_hash,
        author=row.author,
        reason=row.reason,
        created_at=row.created_at,
        pathway=row.body,
        **operating_point_summary(doc, services),
    )


@router.put(
    "/pathways/{pathway_id}",
    name="publish_pathway",
    response_model=PublishResult,
    status_code=201,
    responses={**PROBLEMS, 403: {"description": "Not an editor"}},
)
def publish_pathway(
    pathway_id: str,
    body: PublishBody,
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> dict[str, Any]:
    """Publish a new version (validated first; the version in force stays on any problem).

    Takes effect for new assessments only; earlier assessments keep the version they used.
    """
    with transaction(request.app.state.sessions) as session:
        return services.pathways.publish(session, principal, pathway_id, body.pathway, body.reason)


@router.get(
    "/pathways/{pathway_id}/versions",
    name="list_pathway_versions",
    response_model=list[VersionEntry],
    responses=NOT_FOUND,
)
def list_pathway_versions(
    pathway_id: str, session: ReadSession, services: ServicesDep
) -> list[dict[str, Any]]:
    """History, newest first: who changed what, when and why, as a diff."""
    return services.pathways.versions(session, pathway_id)


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
    draft = _document(session, services, body)
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


def _document(session: Any, services: Any, body: EvaluateBody) -> rules.Pathway | rules.RuleSet:
    if body.rule_set is not None:
        try:
            return rules.load_rule_set(body.rule_set)
        except (KeyError, FileNotFoundError, ValueError) as exc:
            raise InvalidInput(f"unknown rule set '{body.rule_set}'", location="rule_set") from exc
    if isinstance(body.pathway, str):
        return services.pathways.current(session, body.pathway)[1]
    if isinstance(body.pathway, dict):
        try:
            return rules.as_document(body.pathway)
        except rules.InvalidDocument as exc:
            problems = [p.to_dict() for p in exc.problems]
            raise InvalidInput(
                "the draft pathway is not valid", location=problems[0]["path"], problems=problems
            ) from exc
    patient = session.get(Patient, body.patient_id)
    if patient is None:
        raise NotFound(f"Patient/{body.patient_id} not found")
    return services.pathways.current(session, patient.pathway_id)[1]


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
