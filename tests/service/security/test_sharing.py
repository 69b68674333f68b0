"""Sharing on purpose (issue 12): a transfer moves the follow-up with its history; a grant gives a
named organisation time-limited, revocable, audited read access, listed in the access report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from service.security.principal import Role
from service.security.tokens import issue_dev_token
from tests.helpers import ORG, enrol, observation, post_fhir
from tests.service.security.conftest import flush_audit

HOSPITAL_B = "974557746"
MUNICIPALITY = "964338531"  # the municipality's home-care service (primary care)
NOW = datetime.now(UTC).replace(microsecond=0)


def _as(settings: Any, role: str, organisation: str, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_dev_token(settings, Role(role), organisation, **kw)}"}


def _red_patient(client: Any, auth: Any) -> str:
    patient = enrol(client, auth("integration"))
    reading = observation(patient["id"], "spo2", 80, NOW - timedelta(minutes=20), "share-1")
    assert post_fhir(client, "/fhir/Observation", reading, auth("integration")).status_code == 201
    return str(patient["id"])


def test_transfer_moves_the_follow_up_with_its_history(
    client: Any, settings: Any, auth: Any
) -> None:
    pid = _red_patient(client, auth)
    url = f"/api/v1/patients/{pid}"
    b_clinician = _as(settings, "clinician", HOSPITAL_B)
    assert client.get(url, headers=b_clinician).status_code == 404
    body = {
        "organisation": HOSPITAL_B,
        "unit": "lunge",
        "reason": "Moved closer to family; follow-up continues at Hospital B",
        "legal_basis": "helsepersonelloven § 45",
    }
    # Only the holder transfers: B cannot pull A's patient.
    assert client.post(f"{url}/transfer", json=body, headers=b_clinician).status_code == 404
    moved = client.post(f"{url}/transfer", json=body, headers=auth("clinician"))
    assert moved.status_code == 201, moved.text
    assert moved.json()["from_organisation"] == ORG
    assert moved.json()["to_unit"] == "lunge"

    assert client.get(url, headers=auth("clinician")).status_code == 404
    assert client.get(url, headers=b_clinician).json()["organisation"] == HOSPITAL_B
    history = client.get(f"{url}/assessments", headers=b_clinician).json()
    assert history and history[0]["level"] == "red"
    worklist = client.get("/api/v1/worklist", headers=b_clinician).json()
    assert pid in {i["patient"]["id"] for i in worklist}
    assert pid not in {
        i["patient"]["id"] for i in client.get("/api/v1/worklist", headers=auth("clinician")).json()
    }
    transfers = client.get(f"{url}/transfers", headers=b_clinician).json()
    assert [(t["reason"], t["legal_basis"]) for t in transfers] == [
        (body["reason"], body["legal_basis"])
    ]
    # The senders follow the patient: B's integration writes now, A's gets "not enrolled".
    later = observation(pid, "heart_rate", 90, NOW - timedelta(minutes=5), "share-2")
    refused = post_fhir(client, "/fhir/Observation", later, auth("integration"))
    assert refused.status_code == 422
    accepted = post_fhir(
        client, "/fhir/Observation", later, _as(settings, "integration", HOSPITAL_B)
    )
    assert accepted.status_code == 201, accepted.text


def test_grant_gives_a_named_organisation_time_limited_read_access(
    client: Any, app: Any, settings: Any, auth: Any
) -> None:
    pid = _red_patient(client, auth)
    url = f"/api/v1/patients/{pid}"
    home_care = _as(settings, "clinician", MUNICIPALITY, subject="hpr-home-care")
    elsewhere = _as(settings, "clinician", HOSPITAL_B)
    assert client.get(url, headers=home_care).status_code == 404
    body = {
        "organisation": MUNICIPALITY,
        "valid_until": (NOW + timedelta(days=30)).isoformat(),
        "reason": "Home-care nurses visit daily during the COPD exacerbation",
        "legal_basis": "helsepersonelloven § 45; pasientjournalloven § 19",
    }
    assert client.post(f"{url}/grants", json=body, headers=home_care).status_code == 404
    granted = client.post(f"{url}/grants", json=body, headers=auth("clinician"))
    assert granted.status_code == 201, granted.text
    grant = granted.json()
    assert grant["active"] and grant["granted_by_organisation"] == ORG

    # Read: the record, its assessments and the FHIR outputs; nothing else, and no writes.
    assert client.get(url, headers=home_care).status_code == 200
    assert client.get(f"{url}/assessments", headers=home_care).json()
    risks = client.get(
        "/fhir/RiskAssessment", params={"subject": f"Patient/{pid}"}, headers=home_care
    ).json()
    assert risks.get("entry")
    assert pid not in {
        i["patient"]["id"] for i in client.get("/api/v1/worklist", headers=home_care).json()
    }
    target = client.put(
        f"{url}/target-saturation", json={"target_saturation": "88-92"}, headers=home_care
    )
    assert target.status_code == 404
    reading = observation(pid, "spo2", 93, NOW - timedelta(minutes=2), "share-3")
    municipal_sender = _as(settings, "integration", MUNICIPALITY)
    assert post_fhir(client, "/fhir/Observation", reading, municipal_sender).status_code == 422
    assert client.get(url, headers=elsewhere).status_code == 404  # only the named organisation

    # Audited, and listed in the patient's access report with the grant itself.
    flush_audit(client)
    report = client.get(
        "/api/v1/audit/access-report", params={"patient": pid}, headers=auth("compliance")
    ).json()
    assert [g["id"] for g in report["shared_with"]] == [grant["id"]]
    assert any(
        a["organisation"] == MUNICIPALITY and a["who"] == "hpr-home-care"
        for a in report["accesses"]
    )

    # Revoked: the access ends at once; the grant stays on record.
    revoked = client.post(f"{url}/grants/{grant['id']}/revoke", headers=auth("clinician"))
    assert revoked.status_code == 200 and not revoked.json()["active"]
    assert client.get(url, headers=home_care).status_code == 404
    listed = client.get(f"{url}/grants", headers=auth("clinician")).json()
    assert listed[0]["revoked_by"] == "dev-clinician"
    again = client.post(f"{url}/grants/{grant['id']}/revoke", headers=auth("clinician"))
    assert again.status_code == 409


def test_grants_are_time_limited_and_checked(client: Any, auth: Any) -> None:
    pid = _red_patient(client, auth)
    url = f"/api/v1/patients/{pid}/grants"
    base = {
        "organisation": MUNICIPALITY,
        "valid_until": (NOW + timedelta(days=30)).isoformat(),
        "reason": "Home care",
        "legal_basis": "helsepersonelloven § 45",
    }
    cases = [
        ({"valid_until": (NOW - timedelta(minutes=1)).isoformat()}, "valid_until"),
        ({"valid_until": (NOW + timedelta(days=400)).isoformat()}, "valid_until"),
        ({"organisation": ORG}, "organisation"),
        ({"reason": "Nurse visits 15076500565 daily"}, "reason"),
    ]
    for change, field in cases:
        response = client.post(url, json={**base, **change}, headers=auth("clinician"))
        assert response.status_code == 422, (change, response.text)
        assert field in response.text
    assert client.get(url, headers=auth("clinician")).json() == []
