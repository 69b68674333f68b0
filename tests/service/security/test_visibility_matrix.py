"""The cross-organisation matrix (issue 12): every route of the app × every role × {own
organisation, other organisation, other unit, guardian}.

The routes come from the app's own route table (`iter_routes(app)`), so a new route cannot skip
the matrix: a route without an entry in ROUTES below fails `test_every_route_is_in_the_matrix`.
Each entry says how to call the route against organisation A's data and how far that data
reaches (its scope):

- ``patient``: A's patient in unit "lungs" (and its worklist item); another organisation, another
  unit and a guardian context must not see it;
- ``organisation``: A's drift report or audit trail; another organisation must not see it,
  another unit of A may;
- ``none``: no organisation's data (the model, pathway templates, validation); only the role
  table applies.

A caller outside the scope gets 403/404/422, or a 2xx/409 answer in which none of A's secrets
(patient id, worklist item id, report id, the seeding actor) appears; the caller inside it gets
the answer the entry expects, and for reads the secret is in it (so the check can fail).
Administrators see every organisation. One app, seeded once for the module.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.security.policy import GUARDIAN_ROUTES, PUBLIC_ROUTES, ROUTE_ROLES, iter_routes
from service.security.principal import Role
from tests.helpers import (
    FNR_ADULT,
    ORG,
    build_handmade_artifact,
    observation,
    post_fhir,
    questionnaire_response,
)

OTHER_ORG = "974557746"
THIRD_ORG = "964338531"  # given a grant; no actor of the matrix acts for it
SEED_ACTOR = "seed-actor-a"  # the subject that wrote A's data: appears in A's audit trail
RELATIONS = ("own", "other-organisation", "other-unit", "guardian")
HIDDEN_STATUSES = {403, 404, 422}


@dataclass
class Ids:
    patient: str
    item: str
    report: str
    override: str
    child: str
    observation: str
    questionnaire_response: str
    assessment: str
    detected_issue: str
    grant: str


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    fhir: Any = None
    form: dict[str, str] | None = None


@dataclass(frozen=True)
class Entry:
    call: Callable[[Ids], Call]
    scope: str  # patient | organisation | none
    ok: frozenset[int] = frozenset({200})
    shows: bool = False  # a read: the caller inside the scope sees the secret
    secrets: Callable[[Ids], list[str]] = lambda ids: [ids.patient, ids.item]


def _reading(ids: Ids) -> dict[str, Any]:
    when = datetime.now(UTC) - timedelta(minutes=1)
    return observation(ids.patient, "spo2", 90, when, f"matrix-{uuid.uuid4()}")


def _report_secret(ids: Ids) -> list[str]:
    return [ids.report]


def _audit_secret(ids: Ids) -> list[str]:
    return [SEED_ACTOR]


WRITE_OK = frozenset({200, 201, 409, 422})
WEB_OK = frozenset({200, 303, 409, 422})  # a page, a redirect after success, or the form again
GET = "GET"
POST = "POST"
PUT = "PUT"

# Every route of the app that is not public, and how it is called against organisation A's data.
ROUTES: dict[str, Entry] = {
    # the model (no organisation's data)
    "v2_server_metadata": Entry(lambda i: Call(GET, "/v2"), "none"),
    "v2_model_metadata": Entry(lambda i: Call(GET, "/v2/models/triage"), "none"),
    "v2_model_version_metadata": Entry(lambda i: Call(GET, "/v2/models/triage/versions/1"), "none"),
    "v2_model_ready": Entry(lambda i: Call(GET, "/v2/models/triage/ready"), "none"),
    "v2_model_version_ready": Entry(
        lambda i: Call(GET, "/v2/models/triage/versions/1/ready"), "none"
    ),
    "v2_infer": Entry(lambda i: Call(POST, "/v2/models/triage/infer", json={"inputs": []}), "none"),
    "v2_version_infer": Entry(
        lambda i: Call(POST, "/v2/models/triage/versions/1/infer", json={"inputs": []}), "none"
    ),
    "list_models": Entry(lambda i: Call(GET, "/api/v1/models"), "none"),
    "reload_models": Entry(lambda i: Call(POST, "/api/v1/models/reload"), "none"),
    "cds_discovery": Entry(lambda i: Call(GET, "/cds-services"), "none"),
    # Feedback on a card; an empty list is refused before anything is looked up.
    "cds_feedback": Entry(
        lambda i: Call(POST, "/cds-services/home-followup-risk/feedback", json={"feedback": []}),
        "none",
    ),
    "web_models": Entry(lambda i: Call(GET, "/web/models"), "none"),
    "web_models_reload": Entry(lambda i: Call(POST, "/web/models/reload"), "none"),
    # pathways (their ownership is tested in tests/service/test_pathway_ownership.py)
    "list_pathways": Entry(lambda i: Call(GET, "/api/v1/pathways"), "none"),
    "get_pathway": Entry(lambda i: Call(GET, "/api/v1/pathways/copd"), "none"),
    "list_pathway_versions": Entry(lambda i: Call(GET, "/api/v1/pathways/copd/versions"), "none"),
    "publish_pathway": Entry(lambda i: Call(PUT, "/api/v1/pathways/copd", json={}), "none"),
    "approve_pathway_version": Entry(
        lambda i: Call(POST, "/api/v1/pathways/copd/versions/999/approve", json={}), "none"
    ),
    "reject_pathway_version": Entry(
        lambda i: Call(POST, "/api/v1/pathways/copd/versions/999/reject", json={}), "none"
    ),
    "validate_pathway_draft": Entry(
        lambda i: Call(POST, "/api/v1/pathways/validate", json={}), "none"
    ),
    "web_pathways": Entry(lambda i: Call(GET, "/web/pathways"), "none"),
    "web_pathway": Entry(lambda i: Call(GET, "/web/pathways/copd"), "none"),
    "web_pathway_edit": Entry(lambda i: Call(POST, "/web/pathways/copd"), "none"),
    "web_pathway_decide": Entry(lambda i: Call(POST, "/web/pathways/copd/versions/999"), "none"),
    # one patient of A (unit "lungs")
    "enrol_patient": Entry(
        lambda i: Call(
            POST,
            "/api/v1/patients",
            json={
                "identifier": FNR_ADULT,
                "birth_date": "1965-07-15",
                "sex": "female",
                "pathway": "copd",
                "organisation": ORG,
                "unit": "lungs",
            },
        ),
        "patient",
        # a retry of the enrolment (200), or a conflict that names the record inside A
        ok=frozenset({200, 409}),
        shows=True,
    ),
    "get_patient": Entry(
        lambda i: Call(GET, f"/api/v1/patients/{i.patient}"), "patient", shows=True
    ),
    "list_patient_assessments": Entry(
        lambda i: Call(GET, f"/api/v1/patients/{i.patient}/assessments"), "patient"
    ),
    "set_target_saturation": Entry(
        lambda i: Call(
            PUT,
            f"/api/v1/patients/{i.patient}/target-saturation",
            json={"target_saturation": "94-98"},
        ),
        "patient",
        ok=frozenset({200}),
    ),
    "evaluate_rules": Entry(
        lambda i: Call(
            POST, "/api/v1/rules/evaluate", json={"pathway": "copd", "patient_id": i.patient}
        ),
        "patient",
        ok=WRITE_OK,
    ),
    "create_override": Entry(
        lambda i: Call(
            POST,
            f"/api/v1/patients/{i.patient}/overrides",
            json={
                "rule": "spo2-low",
                "thresholds": {"yellow": 86, "red": 84},
                "reason": "Habitual SpO2 in stable COPD",
                "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            },
        ),
        "patient",
        ok=WRITE_OK,
    ),
    "list_overrides": Entry(
        lambda i: Call(GET, f"/api/v1/patients/{i.patient}/overrides"), "patient"
    ),
    "revoke_override": Entry(
        lambda i: Call(POST, f"/api/v1/patients/{i.patient}/overrides/{i.override}/revoke"),
        "patient",
        ok=frozenset({200, 201, 409}),
    ),
    "fhir_bundle": Entry(
        lambda i: Call(
            POST,
            "/fhir",
            fhir={
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"resource": _reading(i), "request": {"method": "POST", "url": "Observation"}}
                ],
            },
        ),
        "patient",
    ),
    "fhir_create_observation": Entry(
        lambda i: Call(POST, "/fhir/Observation", fhir=_reading(i)), "patient", ok=frozenset({201})
    ),
    "fhir_create_questionnaire_response": Entry(
        lambda i: Call(
            POST,
            "/fhir/QuestionnaireResponse",
            fhir={
                "resourceType": "QuestionnaireResponse",
                "status": "completed",
                "subject": {"reference": f"Patient/{i.patient}"},
                "authored": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
                "questionnaire": "https://triage.example.org/fhir/Questionnaire/copd-symptoms|1.0.0",
                "identifier": {
                    "system": "urn:oid:2.16.578.1.12.4.1.7.2",
                    "value": str(uuid.uuid4()),
                },
                "item": [{"linkId": "dyspnoea", "answer": [{"valueCoding": {"code": "mild"}}]}],
            },
        ),
        "patient",
        ok=frozenset({201, 422}),
    ),
    # sharing: a grant to a third organisation, so no relation of the matrix gains access
    "transfer_patient": Entry(
        lambda i: Call(
            POST,
            f"/api/v1/patients/{i.patient}/transfer",
            json={
                "organisation": ORG,
                "unit": "lungs",
                "reason": "Stays where it is",
                "legal_basis": "helsepersonelloven § 45",
            },
        ),
        "patient",
        ok=frozenset({422}),  # already there: checked after the caller may change the patient
    ),
    "list_patient_transfers": Entry(
        lambda i: Call(GET, f"/api/v1/patients/{i.patient}/transfers"), "patient"
    ),
    "grant_patient_access": Entry(
        lambda i: Call(
            POST,
            f"/api/v1/patients/{i.patient}/grants",
            json={
                "organisation": THIRD_ORG,
                "valid_until": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
                "reason": "Home care this week",
                "legal_basis": "helsepersonelloven § 45",
            },
        ),
        "patient",
        ok=frozenset({201}),
    ),
    "list_patient_grants": Entry(
        lambda i: Call(GET, f"/api/v1/patients/{i.patient}/grants"), "patient", shows=True
    ),
    "revoke_patient_grant": Entry(
        lambda i: Call(POST, f"/api/v1/patients/{i.patient}/grants/{i.grant}/revoke"),
        "patient",
        ok=frozenset({200, 409}),
    ),
    "fhir_read_observation": Entry(
        lambda i: Call(GET, f"/fhir/Observation/{i.observation}"), "patient", shows=True
    ),
    "fhir_read_questionnaireresponse": Entry(
        lambda i: Call(GET, f"/fhir/QuestionnaireResponse/{i.questionnaire_response}"),
        "patient",
        shows=True,
    ),
    "fhir_read_riskassessment": Entry(
        lambda i: Call(GET, f"/fhir/RiskAssessment/{i.assessment}"), "patient", shows=True
    ),
    "fhir_read_task": Entry(lambda i: Call(GET, f"/fhir/Task/{i.item}"), "patient", shows=True),
    "fhir_read_detectedissue": Entry(
        lambda i: Call(GET, f"/fhir/DetectedIssue/{i.detected_issue}"), "patient", shows=True
    ),
    "fhir_read_patient": Entry(
        lambda i: Call(GET, f"/fhir/Patient/{i.patient}"), "patient", shows=True
    ),
    "fhir_search_risk_assessment": Entry(
        lambda i: Call(GET, "/fhir/RiskAssessment", {"subject": f"Patient/{i.patient}"}),
        "patient",
        shows=True,
    ),
    "fhir_search_task": Entry(
        lambda i: Call(GET, "/fhir/Task", {"patient": f"Patient/{i.patient}"}),
        "patient",
        shows=True,
    ),
    "fhir_search_detected_issue": Entry(
        lambda i: Call(GET, "/fhir/DetectedIssue", {"patient": f"Patient/{i.patient}"}),
        "patient",
        shows=True,
    ),
    "get_worklist": Entry(lambda i: Call(GET, "/api/v1/worklist"), "patient", shows=True),
    "worklist_transition": Entry(
        lambda i: Call(
            POST, f"/api/v1/worklist/{i.item}/escalate", json={"recipient": "role:clinician"}
        ),
        "patient",
        ok=frozenset({200, 409}),
    ),
    "cds_service_call": Entry(
        lambda i: Call(
            POST,
            "/cds-services/home-followup-risk",
            json={
                "hookInstance": str(uuid.uuid4()),
                "hook": "patient-view",
                "context": {"userId": "Practitioner/hpr-9144889", "patientId": i.patient},
            },
        ),
        "patient",
        shows=True,
    ),
    "list_outbox": Entry(lambda i: Call(GET, "/api/v1/outbox"), "patient"),
    # Resending a dead letter (admin only, who sees everything); an unknown entry is a 404.
    "resend_outbox_entry": Entry(lambda i: Call(POST, "/api/v1/outbox/999999999/resend"), "none"),
    # Bulk export (issue 18): the role gate here; which patients an export holds (the caller's
    # organisation and units only) and who reads a job's status and files are tested end to end
    # in tests/service/test_bulk_export.py. Without Prefer: respond-async the kick-off is a 400.
    "fhir_export": Entry(
        lambda i: Call(GET, "/fhir/$export", {"recipient": "r", "purpose": "p"}), "none"
    ),
    "fhir_group_export": Entry(
        lambda i: Call(GET, "/fhir/Group/unit.lungs/$export", {"recipient": "r"}), "none"
    ),
    "fhir_export_status": Entry(lambda i: Call(GET, "/fhir/bulk-status/no-such-job"), "none"),
    "fhir_export_file": Entry(
        lambda i: Call(GET, "/fhir/bulk-files/no-such-job/Patient.ndjson"), "none"
    ),
    "record_outcome": Entry(
        lambda i: Call(
            POST,
            "/api/v1/outcomes",
            json={
                "patient_id": i.patient,
                "event_type": "none",
                "onset_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                "source": "follow-up-call",
            },
        ),
        "patient",
        ok=WRITE_OK,
    ),
    "web_worklist": Entry(lambda i: Call(GET, "/web/worklist"), "patient", shows=True),
    "web_worklist_items": Entry(lambda i: Call(GET, "/web/worklist/items"), "patient", shows=True),
    "web_patient": Entry(lambda i: Call(GET, f"/web/patients/{i.patient}"), "patient", shows=True),
    # Form posts carry a session cookie with the CSRF token (see _send).
    "web_worklist_action": Entry(
        lambda i: Call(POST, f"/web/worklist/{i.item}/acknowledge"), "patient", ok=WEB_OK
    ),
    "web_patient_override": Entry(
        lambda i: Call(POST, f"/web/patients/{i.patient}/overrides"), "patient", ok=WEB_OK
    ),
    "web_patient_override_revoke": Entry(
        lambda i: Call(POST, f"/web/patients/{i.patient}/overrides/{i.override}/revoke"),
        "patient",
        ok=WEB_OK,
    ),
    "web_patient_target": Entry(
        lambda i: Call(
            POST,
            f"/web/patients/{i.patient}/target-saturation",
            form={"target_saturation": "94-98"},
        ),
        "patient",
        ok=WEB_OK,
    ),
    # A's drift report (organisation scope: units do not narrow it)
    "run_drift_report": Entry(
        lambda i: Call(
            POST,
            "/api/v1/monitoring/drift-reports",
            json={
                "window_start": "2026-01-01T00:00:00+00:00",
                "window_end": "2026-01-02T00:00:00+00:00",
                "organisation": ORG,
            },
        ),
        "organisation",
        ok=frozenset({409, 422}),  # the hand-made model has no reference sample
        secrets=_report_secret,
    ),
    "list_drift_reports": Entry(
        lambda i: Call(GET, "/api/v1/monitoring/drift-reports"),
        "organisation",
        shows=True,
        secrets=_report_secret,
    ),
    "get_drift_report": Entry(
        lambda i: Call(GET, f"/api/v1/monitoring/drift-reports/{i.report}"),
        "organisation",
        shows=True,
        secrets=_report_secret,
    ),
    "get_drift_report_html": Entry(
        lambda i: Call(GET, f"/api/v1/monitoring/drift-reports/{i.report}/html"),
        "organisation",
        secrets=_report_secret,
    ),
    "sign_off_drift_report": Entry(
        lambda i: Call(
            POST,
            f"/api/v1/monitoring/drift-reports/{i.report}/sign-off",
            json={"decision": "accepted", "comment": "Reviewed in the matrix test."},
        ),
        "organisation",
        ok=frozenset({201, 409}),
        secrets=_report_secret,
    ),
    "list_drift_alerts": Entry(
        lambda i: Call(GET, "/api/v1/monitoring/alerts"),
        "organisation",
        shows=True,
        secrets=_report_secret,
    ),
    "web_monitoring": Entry(
        lambda i: Call(GET, "/web/monitoring"), "organisation", shows=True, secrets=_report_secret
    ),
    "web_drift_report": Entry(
        lambda i: Call(GET, f"/web/monitoring/drift-reports/{i.report}"),
        "organisation",
        secrets=_report_secret,
    ),
    "web_drift_report_html": Entry(
        lambda i: Call(GET, f"/web/monitoring/drift-reports/{i.report}/html"),
        "organisation",
        secrets=_report_secret,
    ),
    "web_drift_sign_off": Entry(
        lambda i: Call(
            POST,
            f"/web/monitoring/drift-reports/{i.report}/sign-off",
            form={"decision": "accepted", "comment": "Reviewed from the page."},
        ),
        "organisation",
        ok=WEB_OK,
        secrets=_report_secret,
    ),
    # A's audit trail
    "search_audit_log": Entry(
        lambda i: Call(GET, "/api/v1/audit", {"limit": 1000}),
        "organisation",
        shows=True,
        secrets=_audit_secret,
    ),
    "audit_access_report": Entry(
        lambda i: Call(GET, "/api/v1/audit/access-report", {"patient": i.patient}),
        "organisation",
        shows=True,
        secrets=_audit_secret,
    ),
    "verify_audit_log": Entry(lambda i: Call(GET, "/api/v1/audit/verify"), "none"),
    "web_audit": Entry(
        # Newest first: the seed's enrolments are found by what they did, not by being oldest
        # (a filter by its actor would echo the actor's name into the search field).
        lambda i: Call(GET, "/web/audit", {"action": "write", "resource": "/api/v1/patients"}),
        "organisation",
        shows=True,
        secrets=_audit_secret,
    ),
    "web_audit_export": Entry(
        lambda i: Call(GET, "/web/audit/access-report.csv", {"patient": i.patient}),
        "organisation",
        shows=True,
        secrets=_audit_secret,
    ),
}


# ---- the app, seeded once ---------------------------------------------------------------------


@dataclass
class Env:
    client: TestClient
    settings: Any
    app: Any
    ids: Ids

    tokens: dict[tuple[Role, str], dict[str, str]] = field(default_factory=dict)

    def headers(self, role: Role, relation: str) -> dict[str, str]:
        if (role, relation) not in self.tokens:
            self.tokens[role, relation] = self._headers(role, relation)
        return self.tokens[role, relation]

    def _headers(self, role: Role, relation: str) -> dict[str, str]:
        from service.security.tokens import issue_dev_token

        organisation = OTHER_ORG if relation == "other-organisation" else ORG
        units = ["heart"] if relation == "other-unit" else None
        token = issue_dev_token(
            self.settings,
            role,
            organisation,
            units,
            subject=f"matrix-{role.value}-{relation}",
            representation="guardian" if relation == "guardian" else None,
        )
        return {"Authorization": f"Bearer {token}"}


def _seed(client: TestClient, settings: Any) -> Ids:
    from service.db.engine import transaction
    from service.db.tables import DriftReport, PatientOverride
    from service.security.tokens import issue_dev_token
    from tests.service.security.conftest import make_fnr

    def as_a(role: Role) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {issue_dev_token(settings, role, ORG, subject=SEED_ACTOR)}"
        }

    body = {
        "identifier": FNR_ADULT,
        "birth_date": "1965-07-15",
        "sex": "female",
        "pathway": "copd",
        "organisation": ORG,
        "unit": "lungs",
    }
    patient = client.post("/api/v1/patients", json=body, headers=as_a(Role.INTEGRATION)).json()[
        "id"
    ]
    red = observation(patient, "spo2", 80, datetime.now(UTC) - timedelta(minutes=30), "seed-red")
    stored = post_fhir(client, "/fhir/Observation", red, as_a(Role.INTEGRATION))
    assert stored.status_code == 201, stored.text
    answer = questionnaire_response(patient, datetime.now(UTC) - timedelta(minutes=29), "seed-qr")
    answered = post_fhir(client, "/fhir/QuestionnaireResponse", answer, as_a(Role.INTEGRATION))
    assert answered.status_code == 201, answered.text
    issues = client.get(
        "/fhir/DetectedIssue",
        params={"patient": f"Patient/{patient}"},
        headers=as_a(Role.CLINICIAN),
    ).json()["entry"]
    assessment = client.get(
        f"/api/v1/patients/{patient}/assessments", headers=as_a(Role.CLINICIAN)
    ).json()[0]["id"]
    assert (
        client.get(f"/api/v1/patients/{patient}", headers=as_a(Role.CLINICIAN)).status_code == 200
    )
    item = client.get("/api/v1/worklist", headers=as_a(Role.CLINICIAN)).json()[0]["id"]
    birth = datetime(datetime.now(UTC).year - 8, 3, 3).date()
    child = client.post(
        "/api/v1/patients",
        json={
            **body,
            "identifier": make_fnr(birth, 500),
            "birth_date": birth.isoformat(),
            "pathway": "paediatric",
            "unit": "barn",
        },
        headers=as_a(Role.INTEGRATION),
    ).json()["id"]
    report, override = str(uuid.uuid4()), str(uuid.uuid4())
    folder = Path(settings.var_dir) / "matrix"
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    report_json = {
        "report_key": f"matrix-{report}",
        "model_version": "0.0.1",
        "organisation": ORG,
        "window_start": (now - timedelta(days=7)).isoformat(),
        "window_end": now.isoformat(),
        "verdict": "drift",
        "drifted_features": ["spo2_pct_latest"],
    }
    (folder / "r.json").write_text(json.dumps(report_json))
    (folder / "r.html").write_text("<html><body>report</body></html>")
    with transaction(client.app.state.sessions) as session:  # type: ignore[attr-defined]
        session.add(
            DriftReport(
                id=report,
                report_key=f"matrix-{report}",
                window_start=now - timedelta(days=7),
                window_end=now,
                model_version="0.0.1",
                pathway=None,
                organisation=ORG,
                verdict="drift",
                drifted_features=["spo2_pct_latest"],
                summary={},
                json_path=str(folder / "r.json"),
                html_path=str(folder / "r.html"),
                created_at=now,
                created_by=SEED_ACTOR,
            )
        )
        session.add(
            PatientOverride(
                id=override,
                patient_id=patient,
                body={"rule": "spo2-low", "thresholds": {"yellow": 86, "red": 84}},
                reason="seeded",
                author=SEED_ACTOR,
                created_at=now,
                expires_at=now + timedelta(days=30),
            )
        )
    grant = client.post(
        f"/api/v1/patients/{patient}/grants",
        json={
            "organisation": THIRD_ORG,
            "valid_until": (now + timedelta(days=7)).isoformat(),
            "reason": "Seeded grant",
            "legal_basis": "helsepersonelloven § 45",
        },
        headers=as_a(Role.CLINICIAN),
    )
    assert grant.status_code == 201, grant.text
    client.app.state.audit.flush()  # type: ignore[attr-defined]
    return Ids(
        patient,
        item,
        report,
        override,
        child,
        stored.json()["id"],
        answered.json()["id"],
        assessment,
        issues[0]["resource"]["id"],
        grant.json()["id"],
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from service.app import create_app
    from service.config import Settings
    from tests.helpers import migrate_test_database as migrate

    tmp = tmp_path_factory.mktemp("matrix")
    settings = Settings(
        var_dir=tmp / "var",
        model_dir=build_handmade_artifact(tmp / "artifact"),
        environment="test",
        drift_schedule_hours=0,
        database_url=f"sqlite:///{tmp / 'matrix.db'}",
    )
    migrate(settings.resolved_database_url)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Env(client, settings, app, _seed(client, settings))


# ---- the matrix -------------------------------------------------------------------------------


CSRF = "matrix-csrf-token-" + "x" * 32


def _send(env: Env, call: Call, headers: dict[str, str]) -> Any:
    if call.fhir is not None:
        return post_fhir(env.client, call.path, call.fhir, headers)
    if call.path.startswith("/web/") and call.method == "POST":
        # A session holding only a CSRF token: the bearer header stays the credential.
        from service.web.session import SESSION_COOKIE, _serializer

        cookie = _serializer(env.settings.session_secret).dumps({"csrf": CSRF})
        headers = {**headers, "cookie": f"{SESSION_COOKIE}={cookie}", "x-csrf-token": CSRF}
    return env.client.request(
        call.method,
        call.path,
        params=call.params,
        json=call.json,
        data=call.form,
        headers=headers,
        follow_redirects=False,
    )


def _payload(response: Any) -> str:
    """The answer without what merely echoes the request (a FHIR searchset's self link)."""
    try:
        body = response.json()
    except ValueError:
        return str(response.text)
    if isinstance(body, dict):
        body.pop("link", None)
    return json.dumps(body)


def _expected_inside(role: Role, relation: str, scope: str) -> bool:
    """Whether the caller lies inside the data's scope (so sees it)."""
    if relation == "guardian":
        return False  # A's patient is an adult: never shown to a guardian context
    if role is Role.ADMIN or scope == "none" or relation == "own":
        return True
    return relation == "other-unit" and scope == "organisation"


def _check(env: Env, name: str, entry: Entry, role: Role, relation: str) -> str | None:
    call = entry.call(env.ids)
    response = _send(env, call, env.headers(role, relation))
    status = response.status_code
    where = f"{name} {call.method} {call.path} as {role.value}/{relation}: {status}"
    if status >= 500:
        return f"{where} (server error)"
    allowed = role in ROUTE_ROLES[name] and (relation != "guardian" or name in GUARDIAN_ROUTES)
    if not allowed:
        return None if status == 403 else f"{where}, expected 403 from the role table"
    secrets = entry.secrets(env.ids)
    if _expected_inside(role, relation, entry.scope):
        if entry.scope == "none":
            return None if status not in (401, 403) else f"{where}, expected the role to pass"
        if status not in entry.ok:
            return f"{where}, expected one of {sorted(entry.ok)}"
        if entry.shows and relation == "own" and not any(s in _payload(response) for s in secrets):
            return f"{where}: A's data is missing from the answer"
        return None
    if status in HIDDEN_STATUSES:
        return None
    if status >= 400 and status != 409:
        return f"{where}, expected 403/404/422 outside the scope"
    leaked = [s for s in secrets if s in _payload(response)]
    return f"{where}: leaks {leaked}" if leaked else None


def test_every_route_is_in_the_matrix(env: Env) -> None:
    """Generated from the route table: a new route needs an entry here (and in ROUTE_ROLES)."""
    every = {r.name for r in iter_routes(env.app)}
    names = every - PUBLIC_ROUTES
    assert sorted(names - ROUTES.keys()) == [], "routes missing from the visibility matrix"
    assert sorted(ROUTES.keys() - every) == [], "matrix entries for routes that no longer exist"


@pytest.mark.parametrize("relation", ["other-organisation", "other-unit", "guardian", "own"])
def test_route_role_relation_matrix(env: Env, relation: str) -> None:
    """Outside callers first (own calls may change state, e.g. escalate the item)."""
    failures = []
    for route in iter_routes(env.app):
        if route.name in PUBLIC_ROUTES or route.name not in ROUTES:
            continue
        for role in Role:
            problem = _check(env, route.name, ROUTES[route.name], role, relation)
            if problem:
                failures.append(problem)
    assert not failures, "\n".join(failures)
