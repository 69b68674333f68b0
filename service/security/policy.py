"""The route × role matrix, enforced in one place (the app-wide `authorize` dependency).

Every route is named; a route missing from this table is refused for everyone (default deny), and a
test walks every route × role. governance/access-matrix.md is generated from this table
(`python -m service.security.matrix`); a test fails when the file is out of date.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from service.security.principal import Role

# One-letter names keep the route table below readable as a matrix.
C, M, P, I, A = (  # noqa: E741
    Role.CLINICIAN,
    Role.ML_ENGINEER,
    Role.COMPLIANCE,
    Role.INTEGRATION,
    Role.ADMIN,
)

# Routes anyone may call (liveness for orchestrators, the API description, the V2 health probes).
# /metrics is public only while Settings.public_metrics is true (see `allowed_roles`).
PUBLIC_ROUTES: frozenset[str] = frozenset(
    {
        "healthz",
        "readyz",
        "metrics",
        "openapi",
        "swagger_ui_html",
        "swagger_ui_redirect",
        "redoc_html",
        "fhir_metadata",
        # The model card a CDS card's source.url points at: a browser opens it without a token
        # (it describes the model, synthetic training data, no patient data).
        "cds_model_card",
        "v2_live",
        "v2_ready",
        # Evidently's JavaScript library that drift-report HTML loads (no data in it)
        "evidently_library",
        # web sign-in, sign-out, language choice and the development issuer (service.web.auth)
        "web_root",
        "web_home",
        "web_sign_in",
        "web_sign_in_start",
        "web_callback",
        "web_sign_out",
        "web_language",
        "web_dev_authorize",
        "web_dev_authorize_submit",
        "web_dev_token",
    }
)
# Who may scrape /metrics when it is not public.
METRICS_ROLES = frozenset({M, P, A})

ROUTE_ROLES: dict[str, frozenset[Role]] = {
    # enrolment and patient record
    "enrol_patient": frozenset({C, I, A}),
    "set_target_saturation": frozenset({C, A}),
    "get_patient": frozenset({C, A}),
    "list_patient_assessments": frozenset({C, A}),
    # sharing on purpose (service.domain.sharing): the holding organisation's clinicians
    "transfer_patient": frozenset({C, A}),
    "list_patient_transfers": frozenset({C, A}),
    "grant_patient_access": frozenset({C, A}),
    "list_patient_grants": frozenset({C, A}),
    "revoke_patient_grant": frozenset({C, A}),
    # FHIR ingestion: devices (VKP) and questionnaires (Helsenorge) via integration clients
    "fhir_bundle": frozenset({I, A}),
    "fhir_create_observation": frozenset({I, A}),
    "fhir_create_questionnaire_response": frozenset({I, A}),
    # FHIR outputs read by DIPS (integration) and clinicians
    "fhir_search_risk_assessment": frozenset({C, I, A}),
    "fhir_search_task": frozenset({C, I, A}),
    "fhir_search_detected_issue": frozenset({C, I, A}),
    # FHIR reads by id (DIPS resolves Task.focus, RiskAssessment.basis, Location).
    "fhir_read_observation": frozenset({C, I, A}),
    "fhir_read_questionnaireresponse": frozenset({C, I, A}),
    "fhir_read_riskassessment": frozenset({C, I, A}),
    "fhir_read_task": frozenset({C, I, A}),
    "fhir_read_detectedissue": frozenset({C, I, A}),
    "fhir_read_patient": frozenset({C, I, A}),
    # worklist: clinicians only (an integration client may write measurements, not read worklists)
    "get_worklist": frozenset({C, A}),
    "worklist_transition": frozenset({C, A}),
    # pathways and rules: clinicians read and edit (the pathway's own editors list narrows who
    # may publish); ML engineers and compliance read; the dry run changes nothing
    "list_pathways": frozenset({C, M, P, A}),
    "get_pathway": frozenset({C, M, P, A}),
    "list_pathway_versions": frozenset({C, M, P, A}),
    "publish_pathway": frozenset({C, A}),
    # four-eyes: a second clinician of the organisation (a second admin for a template)
    "approve_pathway_version": frozenset({C, A}),
    "reject_pathway_version": frozenset({C, A}),
    "validate_pathway_draft": frozenset({C, A}),
    "evaluate_rules": frozenset({C, A}),
    # per-patient personal thresholds
    "create_override": frozenset({C, A}),
    "list_overrides": frozenset({C, A}),
    "revoke_override": frozenset({C, A}),
    # models
    "list_models": frozenset({M, P, A}),
    "reload_models": frozenset({M, A}),
    # CDS Hooks (DIPS calls as an integration client; a clinician-context app may call too)
    "cds_discovery": frozenset({C, I, A}),
    "cds_service_call": frozenset({C, I, A}),
    "cds_feedback": frozenset({C, I, A}),
    # Open Inference Protocol (V2): the model for ML engineers and integration clients
    "v2_server_metadata": frozenset({M, I, A}),
    "v2_model_metadata": frozenset({M, I, A}),
    "v2_model_version_metadata": frozenset({M, I, A}),
    "v2_model_ready": frozenset({M, I, A}),
    "v2_model_version_ready": frozenset({M, I, A}),
    "v2_infer": frozenset({M, I, A}),
    "v2_version_infer": frozenset({M, I, A}),
    # DIPS outbox delivery state: operations (admin) and the integration client; no payloads
    "list_outbox": frozenset({I, A}),
    # FHIR Bulk Data export for secondary use (registries, research): pseudonymised, k-anonymous,
    # recorded as a release; the compliance officer releases (admin for operations). Status and
    # files are read only by the client that asked (service.domain.export).
    "fhir_export": frozenset({P, A}),
    "fhir_group_export": frozenset({P, A}),
    "fhir_export_status": frozenset({P, A}),
    "fhir_export_file": frozenset({P, A}),
    # Resending a dead letter is an operations decision, after the cause is fixed.
    "resend_outbox_entry": frozenset({A}),
    # audit log (Normen): compliance officers, and administrators for operations
    "search_audit_log": frozenset({P, A}),
    "audit_access_report": frozenset({P, A}),
    "verify_audit_log": frozenset({P, A}),
    # drift monitoring: ML engineers and compliance run and read, only compliance signs off,
    # administrators read; clinicians (and the site's integration client, e.g. DIPS admissions)
    # record outcomes for performance monitoring and local recalibration
    "run_drift_report": frozenset({M, P}),
    "list_drift_reports": frozenset({M, P, A}),
    "get_drift_report": frozenset({M, P, A}),
    "get_drift_report_html": frozenset({M, P, A}),
    "sign_off_drift_report": frozenset({P}),
    "list_drift_alerts": frozenset({M, P, A}),
    "record_outcome": frozenset({C, I, A}),
    # web pages (service.web): each page as its API counterpart
    "web_worklist": frozenset({C, A}),
    "web_worklist_items": frozenset({C, A}),
    "web_worklist_action": frozenset({C, A}),
    "web_patient": frozenset({C, A}),
    "web_patient_override": frozenset({C, A}),
    "web_patient_override_revoke": frozenset({C, A}),
    "web_patient_target": frozenset({C, A}),
    "web_pathways": frozenset({C, M, P, A}),
    "web_pathway": frozenset({C, M, P, A}),
    "web_pathway_edit": frozenset({C, A}),
    "web_pathway_decide": frozenset({C, A}),
    "web_models": frozenset({M, P, A}),
    "web_models_reload": frozenset({M, A}),
    "web_monitoring": frozenset({M, P, A}),
    "web_drift_report": frozenset({M, P, A}),
    "web_drift_report_html": frozenset({M, P, A}),
    "web_drift_sign_off": frozenset({P}),
    "web_audit": frozenset({P, A}),
    "web_audit_export": frozenset({P, A}),
}

# A token acting for a parent or guardian (Helsenorge representation) may call only these, and
# only for one named patient; see service.security.guardian.
GUARDIAN_ROUTES: frozenset[str] = frozenset(
    {
        "fhir_search_risk_assessment",
        "fhir_search_task",
        "fhir_search_detected_issue",
    }
)


def allowed_roles(route_name: str, public_metrics: bool = True) -> frozenset[Role] | None:
    """Roles allowed on a named route; None for a public route; empty (deny) when unlisted."""
    if route_name == "metrics" and not public_metrics:
        return METRICS_ROLES
    if route_name in PUBLIC_ROUTES:
        return None
    return ROUTE_ROLES.get(route_name, frozenset())


@dataclass(frozen=True)
class RouteInfo:
    name: str
    path: str
    methods: tuple[str, ...]


def iter_routes(app: Any) -> Iterator[RouteInfo]:
    """Every HTTP route of the app, including those of included routers (FastAPI ≥ 0.16x)."""
    from fastapi.routing import iter_route_contexts

    for ctx in iter_route_contexts(app.routes):
        methods = ctx.methods
        path = ctx.path
        if not methods or path is None:  # websockets, mounts
            continue
        yield RouteInfo(ctx.name or "", path, tuple(sorted(m for m in methods if m != "HEAD")))


def unlisted_routes(app: Any) -> list[RouteInfo]:
    """Routes that are neither public nor in ROUTE_ROLES: refused for everyone until listed."""
    return [
        r for r in iter_routes(app) if r.name not in PUBLIC_ROUTES and r.name not in ROUTE_ROLES
    ]
