"""The route × role matrix, enforced in one place (the app-wide `authorize` dependency).

Every route is named; a route missing from this table is refused for everyone (default deny), and a
test walks every route × role. governance/access-matrix.md is generated from this table.
"""

from __future__ import annotations

from service.security.principal import Role

C, M, P, I, A = (Role.CLINICIAN, Role.ML_ENGINEER, Role.COMPLIANCE, Role.INTEGRATION, Role.ADMIN)

# Routes anyone may call (liveness for orchestrators, the API description, the V2 health probes).
PUBLIC_ROUTES: frozenset[str] = frozenset({
    "healthz", "readyz", "metrics", "openapi", "swagger_ui_html", "swagger_ui_redirect",
    "redoc_html", "fhir_metadata", "v2_live", "v2_ready",
})

ROUTE_ROLES: dict[str, frozenset[Role]] = {
    # enrolment and patient record
    "enrol_patient": frozenset({C, I, A}),
    "get_patient": frozenset({C, A}),
    "list_patient_assessments": frozenset({C, A}),
    # FHIR ingestion: devices (VKP) and questionnaires (Helsenorge) via integration clients
    "fhir_bundle": frozenset({I, A}),
    "fhir_create_observation": frozenset({I, A}),
    "fhir_create_questionnaire_response": frozenset({I, A}),
    # FHIR outputs read by DIPS (integration) and clinicians
    "fhir_search_risk_assessment": frozenset({C, I, A}),
    "fhir_search_task": frozenset({C, I, A}),
    "fhir_search_detected_issue": frozenset({C, I, A}),
    # worklist: clinicians only (an integration client may write measurements, not read worklists)
    "get_worklist": frozenset({C, A}),
    "worklist_transition": frozenset({C, A}),
    # models
    "list_models": frozenset({M, P, A}),
    "reload_models": frozenset({M, A}),
}


def allowed_roles(route_name: str) -> frozenset[Role] | None:
    """Roles allowed on a named route; None for a public route."""
    if route_name in PUBLIC_ROUTES:
        return None
    return ROUTE_ROLES.get(route_name, frozenset())
