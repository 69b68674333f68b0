"""Organisation boundaries (issue 12, findings 1, 3 and 4): writes bound to the caller's
organisations, no enrolment oracle, a guardian sees one child, audit reads scoped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from models.identifiers import FNR_SYSTEM
from service.security.principal import Role
from service.security.tokens import issue_dev_token
from tests.helpers import FNR_ADULT, ORG, enrol, observation, post_fhir, questionnaire_response
from tests.service.security.conftest import flush_audit, make_fnr

OTHER_ORG = "974557746"
NOW = datetime.now(UTC).replace(microsecond=0)


def _token(settings: Any, role: str, organisation: str = ORG, **kw: Any) -> dict[str, str]:
    token = issue_dev_token(settings, Role(role), organisation, **kw)
    return {"Authorization": f"Bearer {token}"}


def _counts(app: Any, patient_id: str) -> tuple[int, int, int]:
    from service.db.tables import Assessment, IngestedResource, Reading

    with app.state.sessions() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(t).where(t.patient_id == patient_id))
            or 0
            for t in (IngestedResource, Reading, Assessment)
        )


def _by_identifier(resource: dict[str, Any], fnr: str) -> dict[str, Any]:
    return {**resource, "subject": {"identifier": {"system": FNR_SYSTEM, "value": fnr}}}


def _outcome(response: Any) -> tuple[int, list[Any]]:
    body = response.json()
    return response.status_code, [
        (i.get("diagnostics"), i.get("expression")) for i in body["issue"]
    ]


# ---- finding 1: writes across organisations ----------------------------------------------


def test_other_organisations_patient_is_answered_as_an_unknown_subject(
    client: Any, app: Any, settings: Any, auth: Any
) -> None:
    patient = enrol(client, auth("integration"))
    before = _counts(app, patient["id"])
    other = _token(settings, "integration", OTHER_ORG, subject="vkp-b")
    unknown_fnr = make_fnr(datetime(1970, 3, 4), 100)

    red = observation(patient["id"], "spo2", 71, NOW - timedelta(minutes=5), "b-1")
    by_id = post_fhir(client, "/fhir/Observation", red, other)
    by_fnr = post_fhir(client, "/fhir/Observation", _by_identifier(red, FNR_ADULT), other)
    unknown_id = post_fhir(
        client, "/fhir/Observation", {**red, "subject": {"reference": "Patient/no-such"}}, other
    )
    unknown = post_fhir(client, "/fhir/Observation", _by_identifier(red, unknown_fnr), other)

    assert by_id.status_code == 422, by_id.text
    # Same status, text and element as a subject nobody enrolled: no enrolment oracle.
    assert _outcome(by_id) == _outcome(unknown_id) == _outcome(by_fnr) == _outcome(unknown)
    qr = questionnaire_response(patient["id"], NOW - timedelta(minutes=4), "b-2")
    unknown_qr = questionnaire_response("no-such", NOW - timedelta(minutes=4), "b-3")
    assert _outcome(post_fhir(client, "/fhir/QuestionnaireResponse", qr, other)) == _outcome(
        post_fhir(client, "/fhir/QuestionnaireResponse", unknown_qr, other)
    )
    # Nothing stored, nothing scored.
    assert _counts(app, patient["id"]) == before

    # Bundles: a transaction is refused whole; a batch refuses the entry, as for an unknown one.
    entry = {"resource": red, "request": {"method": "POST", "url": "Observation"}}
    for kind in ("transaction", "batch"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
        response = post_fhir(client, "/fhir", bundle, other)
        unknown_entry = {
            "resource": _by_identifier(red, unknown_fnr),
            "request": {"method": "POST", "url": "Observation"},
        }
        control = post_fhir(client, "/fhir", {**bundle, "entry": [unknown_entry]}, other)
        assert response.status_code == control.status_code
        assert response.json().get("issue") == control.json().get("issue")
        if kind == "batch":
            assert response.json()["entry"][0]["response"] == control.json()["entry"][0]["response"]
    assert _counts(app, patient["id"]) == before

    # The organisation that holds the patient still writes, and a retry of B's message that A
    # then sends is A's own.
    assert post_fhir(client, "/fhir/Observation", red, auth("integration")).status_code == 201
    assert _outcome(post_fhir(client, "/fhir/Observation", red, other)) == _outcome(unknown_id)


def test_a_token_naming_several_organisations_sends_for_each(
    client: Any, settings: Any, auth: Any
) -> None:
    patient = enrol(client, auth("integration"))
    both = _token(settings, "integration", OTHER_ORG, subject="vkp-region", also_for=[ORG])
    reading = observation(patient["id"], "heart_rate", 80, NOW - timedelta(minutes=3), "r-1")
    assert post_fhir(client, "/fhir/Observation", reading, both).status_code == 201
    # A clinician cannot widen their own reach with the claim: it is for integration clients.
    nurse = _token(settings, "clinician", OTHER_ORG, also_for=[ORG])
    assert client.get(f"/api/v1/patients/{patient['id']}", headers=nurse).status_code == 404


def test_enrolment_conflict_names_no_id_outside_the_callers_organisation(
    client: Any, settings: Any, auth: Any
) -> None:
    patient = enrol(client, auth("integration"))
    body = {
        "identifier": FNR_ADULT,
        "birth_date": "1965-07-15",
        "sex": "female",
        "pathway": "copd",
        "organisation": OTHER_ORG,
        "unit": "lungs",
    }
    response = client.post(
        "/api/v1/patients", json=body, headers=_token(settings, "integration", OTHER_ORG)
    )
    assert response.status_code == 409
    assert patient["id"] not in response.text and "Patient/" not in response.text
    # Inside the organisation the id is named, so the sender can use it: the same enrolment
    # again is a retry (200 with the existing patient, issue 14), other details a 409 with the id.
    own = client.post(
        "/api/v1/patients", json={**body, "organisation": ORG}, headers=auth("integration")
    )
    assert own.status_code == 200 and own.json()["id"] == patient["id"]
    other = client.post(
        "/api/v1/patients",
        json={**body, "organisation": ORG, "sex": "male"},
        headers=auth("integration"),
    )
    assert other.status_code == 409 and patient["id"] in other.text


# ---- finding 3: a guardian sees the one child they represent ---------------------------------


def _child(client: Any, auth: Any, k: int) -> str:
    birth = datetime(NOW.year - 8, 2, 1 + k).date()
    p = enrol(
        client,
        auth("integration"),
        make_fnr(birth, 500 + 10 * k),
        pathway="paediatric",
        unit="barn",
        birth_date=birth.isoformat(),
    )
    # A fast heart rate for a child of 8: an alert, so Task and DetectedIssue exist.
    reading = observation(p["id"], "heart_rate", 170, NOW - timedelta(minutes=10 + k), f"c-{k}")
    assert post_fhir(client, "/fhir/Observation", reading, auth("integration")).status_code == 201
    return str(p["id"])


def _patients_in(bundle: dict[str, Any]) -> set[str]:
    out = set()
    for entry in bundle.get("entry", []):
        if entry.get("search", {}).get("mode") == "outcome":
            continue  # an OperationOutcome about the search (an ignored parameter), not data
        resource = entry["resource"]
        ref = (resource.get("subject") or resource.get("for") or resource.get("patient") or {}).get(
            "reference", ""
        )
        out.add(ref.removeprefix("Patient/"))
    return out


@pytest.mark.parametrize("resource", ["Task", "RiskAssessment", "DetectedIssue"])
@pytest.mark.parametrize("parameter", ["subject", "patient"])
def test_guardian_sees_one_child_whatever_search_parameter(
    client: Any, settings: Any, auth: Any, resource: str, parameter: str
) -> None:
    children = [_child(client, auth, k) for k in range(3)]
    guardian = _token(settings, "integration", subject="helsenorge", representation="guardian")
    seen: set[str] = set()
    for offset in range(0, 6):
        response = client.get(
            f"/fhir/{resource}",
            params={parameter: f"Patient/{children[0]}", "_offset": offset, "_count": 1},
            headers=guardian,
        )
        assert response.status_code == 200, response.text
        seen |= _patients_in(response.json())
    assert seen <= {children[0]}
    # The clinician, for comparison, sees all three children: the data is there to leak.
    everything = client.get(f"/fhir/{resource}", headers=auth("clinician")).json()
    assert set(children) <= _patients_in(everything)


# ---- finding 4: audit reads are scoped by organisation ------------------------------------


def test_compliance_of_another_organisation_reads_no_audit_trail(
    client: Any, app: Any, settings: Any, auth: Any
) -> None:
    patient = enrol(client, auth("integration"))
    assert client.get(f"/api/v1/patients/{patient['id']}", headers=auth("clinician")).status_code
    flush_audit(client)
    other = _token(settings, "compliance", OTHER_ORG)
    trail = client.get("/api/v1/audit", params={"patient": patient["id"]}, headers=other)
    assert trail.status_code == 200 and trail.json() == {"total": 0, "entries": []}
    everything = client.get("/api/v1/audit", params={"limit": 1000}, headers=other).json()
    assert all(e["organisation"] == OTHER_ORG for e in everything["entries"])
    report = client.get(
        "/api/v1/audit/access-report", params={"patient": patient["id"]}, headers=other
    )
    assert report.status_code == 404
    # The organisation holding the record reads both.
    own = auth("compliance")
    assert client.get("/api/v1/audit", params={"patient": patient["id"]}, headers=own).json()[
        "total"
    ]
    mine = client.get("/api/v1/audit/access-report", params={"patient": patient["id"]}, headers=own)
    assert mine.status_code == 200 and mine.json()["accesses"]
