"""Drift reports, their alerts and sign-offs (compliance); outcomes are in service.api.outcomes.

Thin routes: HTTP in, calls on service.domain.monitoring.MonitoringService out. A report run is
CPU-bound: the route waits in a worker thread while the comparison runs in a separate process
(service.domain.monitoring.ReportRunner), so neither the event loop nor scoring waits for it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from monitoring.vocabulary import Decision
from service.api.deps import ERRORS, INVALID, NOT_FOUND, ReadSession, ServicesDep
from service.db.engine import transaction
from service.domain.container import Services
from service.domain.monitoring import MonitoringService
from service.errors import Forbidden
from service.security import visibility
from service.security.deps import CurrentPrincipal

router = APIRouter(prefix="/api/v1/monitoring", tags=["monitoring"], responses=ERRORS)

# Bounds that keep a datetime well inside what every store and epoch conversion handles.
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_MAX_WINDOW_DAYS = 366
_PATHWAY_ID = r"^[a-z0-9][a-z0-9-]{0,63}$"
_ORGNR = r"^\d{9}$"


def _bounded(value: datetime) -> datetime:
    if not _EARLIEST <= value <= _LATEST:
        raise ValueError("must lie between 2000-01-01 and 2100-01-01")
    return value.astimezone(UTC)


class ReferenceWindow(BaseModel):
    """A local baseline: the same scope's own earlier period, built like the window."""

    model_config = ConfigDict(extra="forbid")
    window_start: AwareDatetime = Field(description="Baseline start (inclusive), clinical time.")
    window_end: AwareDatetime = Field(description="Baseline end (exclusive), clinical time.")

    _bounds = field_validator("window_start", "window_end")(_bounded)


class DriftReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window_start: AwareDatetime = Field(
        description="Start (inclusive), with a time zone; clinical time (when measured)."
    )
    window_end: AwareDatetime = Field(description="End (exclusive), with a time zone.")
    pathway: str | None = Field(default=None, pattern=_PATHWAY_ID)
    organisation: str | None = Field(default=None, pattern=_ORGNR)
    reference: ReferenceWindow | None = Field(
        default=None,
        description="Compare with this baseline period of the same scope instead of the "
        "model's training sample (e.g. the first weeks after go-live).",
    )

    _bounds = field_validator("window_start", "window_end")(_bounded)

    def check_window(self) -> None:
        from service.errors import InvalidInput

        if self.window_start >= self.window_end:
            raise InvalidInput("window_start must be before window_end", location="window_start")
        if (self.window_end - self.window_start).days > _MAX_WINDOW_DAYS:
            raise InvalidInput(
                f"a window may span at most {_MAX_WINDOW_DAYS} days", location="window_end"
            )
        ref = self.reference
        if ref is not None:
            if ref.window_start >= ref.window_end:
                raise InvalidInput(
                    "reference.window_start must be before reference.window_end",
                    location="reference.window_start",
                )
            if (ref.window_end - ref.window_start).days > _MAX_WINDOW_DAYS:
                raise InvalidInput(
                    f"a baseline may span at most {_MAX_WINDOW_DAYS} days",
                    location="reference.window_end",
                )


class SignOffCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Decision = Field(
        description="accepted (no action) | action-required (owner and date in the comment) | "
        "escalated (to ML engineering)"
    )
    comment: str = Field(min_length=3, max_length=4000)


class SignOffPublic(BaseModel):
    id: str
    report_id: str
    decision: str
    comment: str
    signed_by: str
    role: str
    signed_at: datetime


class DataQualityFlag(BaseModel):
    kind: str
    column: str
    share: float | None
    limit: float | None
    count: int
    text_en: str
    text_nb: str


class DriftReportPublic(BaseModel):
    id: str
    report_key: str
    window_start: datetime
    window_end: datetime
    model_version: str
    pathway: str | None
    organisation: str | None
    verdict: Literal["ok", "warning", "drift"]
    severity: Literal["none", "low", "moderate", "high"] | None = Field(
        description="From effect sizes and the number of drifted features."
    )
    likely_kind: (
        Literal["device-or-unit", "population", "adherence", "model-output", "unclear"] | None
    ) = Field(description="What the pattern of changes points to (None when nothing drifted).")
    summary_en: str | None = Field(description="The verdict in one plain sentence.")
    summary_nb: str | None = Field(description="Dommen i én setning (bokmål).")
    reference_kind: Literal["training-sample", "local-baseline"]
    reference_window_start: str | None
    reference_window_end: str | None
    n_patients: int | None = Field(description="Patients in the window.")
    pathway_mix_changed: bool = Field(
        description="A note: the pathway mix differs from the reference (never drift alone)."
    )
    drifted_features: list[str]
    data_quality: list[DataQualityFlag] = Field(
        description="Data-quality flags (missing, out of range, implausible), apart from drift."
    )
    prediction_drift: bool
    pathway_mix_drift: bool
    performance: dict[str, Any] | None = Field(
        description="On recorded outcomes; the shipped model is trained on synthetic data, so "
        "these figures are no clinical validation."
    )
    n_current: int = Field(description="Patient-days (rows) in the window.")
    n_reference: int
    reference_hash: str
    created_at: datetime
    created_by: str
    sign_off: SignOffPublic | None


class DriftReportDetail(DriftReportPublic):
    report: dict[str, Any] = Field(description="The full report (monitoring.drift JSON).")


class DriftAlertPublic(BaseModel):
    kind: Literal["drift", "prediction_drift", "data_quality", "performance", "pathway_mix"]
    severity: Literal["critical", "warning"]
    text_en: str
    text_nb: str
    features: list[str]
    report_id: str
    report_key: str
    model_version: str
    pathway: str | None
    organisation: str | None
    verdict: str
    window_start: datetime
    window_end: datetime
    created_at: datetime
    signed_off: bool
    sign_off_decision: str | None


def _monitoring(services: Services) -> MonitoringService:
    return services.monitoring


@router.post(
    "/drift-reports",
    name="run_drift_report",
    status_code=201,
    response_model=DriftReportPublic,
    responses={
        200: {
            "description": "The same window, model, scope and reference was "
            "reported before: the stored report",
            "model": DriftReportPublic,
        },
        409: {"description": "The loaded model has no reference sample"},
        422: {"description": "Invalid window, or too few patients or patient-days in it"},
    },
)
async def run_drift_report(
    body: DriftReportCreate,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> dict[str, Any]:
    """Run a drift report for a window of clinical time (idempotent), against the model's
    training sample or, with ``reference``, the same scope's own baseline period."""
    body.check_window()
    if not visibility.may_run_report(principal, body.organisation):
        raise Forbidden("you may run drift reports for your own organisation only")
    outcome = await asyncio.to_thread(
        _monitoring(services).run_report,
        request.app.state.sessions,
        body.window_start,
        body.window_end,
        body.pathway,
        body.organisation,
        created_by=principal.subject,
        reference_start=None if body.reference is None else body.reference.window_start,
        reference_end=None if body.reference is None else body.reference.window_end,
        role=principal.role.value,
    )
    if not outcome.created:
        response.status_code = 200
    return outcome.report


@router.get("/drift-reports", name="list_drift_reports", response_model=list[DriftReportPublic])
def list_drift_reports(
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
    pathway: str | None = Query(None, pattern=_PATHWAY_ID),
    organisation: str | None = Query(None, pattern=_ORGNR),
    verdict: Literal["ok", "warning", "drift"] | None = None,
    signed_off: bool | None = Query(
        None, description="true: signed off only; false: awaiting review"
    ),
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Reports, newest first, with verdicts and sign-off state."""
    return _monitoring(services).list_reports(
        session,
        pathway=pathway,
        organisation=organisation,
        verdict=verdict,
        signed_off=signed_off,
        limit=limit,
        viewer=principal,
    )


@router.get(
    "/drift-reports/{report_id}",
    name="get_drift_report",
    response_model=DriftReportDetail,
    responses=NOT_FOUND,
)
def get_drift_report(
    report_id: str, principal: CurrentPrincipal, session: ReadSession, services: ServicesDep
) -> dict[str, Any]:
    """One report: its index row, sign-off and the full JSON."""
    return _monitoring(services).get_report(session, report_id, principal)


@router.get(
    "/drift-reports/{report_id}/html",
    name="get_drift_report_html",
    response_class=FileResponse,
    responses={
        **NOT_FOUND,
        200: {"content": {"text/html": {}}, "description": "The Evidently report for people"},
    },
)
def get_drift_report_html(
    report_id: str, principal: CurrentPrincipal, session: ReadSession, services: ServicesDep
) -> FileResponse:
    """The readable report: verdict banner, then Evidently's plots (aggregates, no raw rows)."""
    path = _monitoring(services).html_path(session, report_id, principal)
    return FileResponse(
        path,
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.post(
    "/drift-reports/{report_id}/sign-off",
    name="sign_off_drift_report",
    status_code=201,
    response_model=SignOffPublic,
    responses={
        **NOT_FOUND,
        **INVALID,
        409: {"description": "Already signed off (sign-offs are immutable)"},
    },
)
def sign_off_drift_report(
    report_id: str,
    body: SignOffCreate,
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> dict[str, Any]:
    """The compliance officer's decision on a report: once, immutable, audited."""
    with transaction(request.app.state.sessions) as session:
        return _monitoring(services).sign_off(
            session,
            report_id,
            body.decision,
            body.comment,
            signed_by=principal.subject,
            role=principal.role.value,
            signer=principal,
        )


@router.get("/alerts", name="list_drift_alerts", response_model=list[DriftAlertPublic])
def list_drift_alerts(
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
    pathway: str | None = Query(None, pattern=_PATHWAY_ID),
    kind: Literal["drift", "prediction_drift", "data_quality", "performance", "pathway_mix"]
    | None = None,
) -> list[dict[str, Any]]:
    """Alerts of the newest report per scope: statistical drift and data quality apart."""
    alerts = _monitoring(services).alerts(session, pathway, principal)
    return [a for a in alerts if kind is None or a["kind"] == kind]


@router.get("/evidently.js", name="evidently_library", include_in_schema=False)
def evidently_library() -> FileResponse:
    """Evidently's JavaScript bundle that the HTML reports load (a library: no data in it)."""
    from monitoring.drift import evidently_library_path

    return FileResponse(
        evidently_library_path(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )
