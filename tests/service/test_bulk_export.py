"""FHIR Bulk Data export for secondary use (issue 18): kick-off, status, NDJSON files, _type and
_since; pseudonyms per recipient; k-anonymity; no person number or birth date leaves; the
release record names everything released and the audit chain names the release."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from models.identifiers import contains_person_number
from tests.fhir_r4 import validate_r4
from tests.helpers import enrol, observation, post_fhir, questionnaire_response
from tests.service.security.conftest import make_fnr

NOW = datetime.now(UTC).replace(microsecond=0)
ASYNC = {"Prefer": "respond-async"}
RELEASE = {
    "recipient": "Nasjonalt kvalitetsregister for KOLS",
    "purpose": "annual quality report on home follow-up",
    "legalBasis": "helseregisterloven",
}
# Five women of one age band on one pathway in one unit (a group of k = 5), and one man alone
# in his group, whose rows the k-anonymity rule must withhold.
BIRTHS = [date(1955 + i, 3, 10 + i) for i in range(5)]
LONE_BIRTH = date(1957, 11, 2)


@pytest.fixture
def cohort(client: Any, auth: Any) -> dict[str, Any]:
    integration = auth("integration")
    enrolled = []
    for i, birth in enumerate([*BIRTHS, LONE_BIRTH]):
        fnr = make_fnr(birth, 100 + 10 * i)
        sex = "male" if birth == LONE_BIRTH else "female"
        patient = enrol(client, integration, fnr, birth_date=birth.isoformat(), sex=sex)
        for d in (3, 1):
            reading = observation(
                patient["id"], "spo2", 93 + d, NOW - timedelta(days=d), f"o{i}{d}"
            )
            assert post_fhir(client, "/fhir/Observation", reading, integration).status_code == 201
        answer = questionnaire_response(patient["id"], NOW - timedelta(hours=2), f"q{i}")
        assert (
            post_fhir(client, "/fhir/QuestionnaireResponse", answer, integration).status_code == 201
        )
        enrolled.append({"id": patient["id"], "fnr": fnr, "birth": birth, "sex": sex})
    outcome = client.post(
        "/api/v1/outcomes",
        json={
            "patient_id": enrolled[0]["id"],
            "event_type": "none",
            "onset_at": (NOW - timedelta(hours=1)).isoformat(),
            "source": "follow-up-call",
        },
        headers=auth("clinician"),
    )
    assert outcome.status_code == 201, outcome.text
    return {"patients": enrolled}


def _run_export(
    client: Any, headers: dict[str, str], path: str = "/fhir/$export", **params: str
) -> tuple[str, dict[str, Any]]:
    kick = client.get(path, params={**RELEASE, **params}, headers={**headers, **ASYNC})
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["Content-Location"]
    assert "/fhir/bulk-status/" in status_url
    job_id = status_url.rsplit("/", 1)[1]
    # Bounded, but generous: the job is small, yet shares two cores with other test runs.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = client.get(status_url, headers=headers)
        if status.status_code == 200:
            return job_id, status.json()
        assert status.status_code == 202, status.text
        assert status.headers.get("X-Progress")
        time.sleep(0.05)
    raise AssertionError("export did not finish within 120 s")


def _files(client: Any, headers: dict[str, str], manifest: dict[str, Any]) -> dict[str, str]:
    out = {}
    for entry in manifest["output"] + manifest["error"]:
        response = client.get(entry["url"], headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        out[entry["url"]] = response.text
    return out


def _resources(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert text.endswith("\n") and all(lines)
    return [json.loads(line) for line in lines]


def test_bulk_export_end_to_end(client: Any, app: Any, auth: Any, cohort: dict[str, Any]) -> None:
    compliance = auth("compliance")
    job_id, manifest = _run_export(client, compliance)

    # The manifest of the IG.
    assert set(manifest) >= {"transactionTime", "request", "requiresAccessToken", "output", "error"}
    assert manifest["requiresAccessToken"] is True
    assert "/fhir/$export" in manifest["request"]
    types = {o["type"] for o in manifest["output"]}
    assert types == {
        "Patient",
        "Observation",
        "QuestionnaireResponse",
        "RiskAssessment",
        "PlanDefinition",
    }
    files = _files(client, compliance, manifest)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["output"]:
        resources = _resources(files[entry["url"]])
        assert len(resources) == entry["count"]
        by_type.setdefault(entry["type"], []).extend(resources)
    for resources in by_type.values():
        for resource in resources:
            validate_r4(resource)

    # k-anonymity: the lone man's group is below k = 5, so he and his rows are withheld, and
    # the manifest says so in its error file.
    patients = by_type["Patient"]
    assert len(patients) == 5 and {p["gender"] for p in patients} == {"female"}
    pseudonyms = {p["id"] for p in patients}
    subjects = {
        r["subject"]["reference"].removeprefix("Patient/")
        for t in ("Observation", "QuestionnaireResponse", "RiskAssessment")
        for r in by_type[t]
    }
    assert subjects == pseudonyms
    assert len(manifest["error"]) == 1
    (outcome,) = _resources(files[manifest["error"][0]["url"]])
    validate_r4(outcome)
    assert outcome["issue"][0]["code"] == "suppressed"
    assert "k-anonymity (k=5)" in outcome["issue"][0]["diagnostics"]
    # Observation holds measurements (10) and the recorded outcome (1).
    assert len(by_type["Observation"]) == 11
    assert any(o["category"][0]["coding"][0]["code"] == "outcome" for o in by_type["Observation"])

    # Nothing identifying leaves: no person number, no exact birth date, no service id.
    everything = "".join(files.values()) + json.dumps(manifest)
    assert not contains_person_number(everything)
    for p in cohort["patients"]:
        assert p["fnr"] not in everything
        assert p["birth"].isoformat() not in everything
        assert p["id"] not in everything
    assert {p["birthDate"] for p in patients} == {str(b.year) for b in BIRTHS}
    # Times moved per patient by a whole number of days: each patient's two measurements keep
    # their 2-day interval, and neither keeps its real day.
    measured: dict[str, list[date]] = {}
    for o in by_type["Observation"]:
        if o["category"][0]["coding"][0]["code"] != "outcome":
            when = date.fromisoformat(o["effectiveDateTime"][:10])
            measured.setdefault(o["subject"]["reference"], []).append(when)
    assert len(measured) == 5
    for first, last in (sorted(days) for days in measured.values()):
        assert (last - first).days == 2
        assert first != (NOW - timedelta(days=3)).date()

    # The release record names everything released, with each file's SHA-256 ...
    release = app.state.exports.release(job_id)
    assert release is not None
    assert release.recipient == RELEASE["recipient"] and release.purpose == RELEASE["purpose"]
    assert release.legal_basis == "helseregisterloven"
    assert release.released_by and release.role == "compliance"
    named = {f["url"]: f for f in release.contents["files"]}
    assert set(named) == set(files)
    for url, text in files.items():
        assert named[url]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    # His Patient, 2 measurements, 1 answer and the 3 assessments they triggered.
    assert release.contents["suppressed"] == {"k": 5, "groups": 1, "patients": 1, "rows": 7}
    assert release.contents["patients"] == 5
    canonical = json.dumps(
        release.contents, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert release.content_hash == hashlib.sha256(canonical.encode()).hexdigest()
    # ... and the audit chain holds a row naming the release and that hash.
    from service.db.tables import AuditEntry

    with app.state.sessions() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "release")).all()
    assert [r.resource for r in rows] == [f"DataRelease/{release.id} sha256:{release.content_hash}"]
    assert rows[0].purpose == "secondary-use:helseregisterloven"

    # Another recipient gets other pseudonyms for the same patients.
    _, other = _run_export(client, compliance, recipient="Kreftregisteret forskning")
    other_files = _files(client, compliance, other)
    other_patients = next(
        _resources(other_files[o["url"]]) for o in other["output"] if o["type"] == "Patient"
    )
    assert len(other_patients) == 5
    assert not {p["id"] for p in other_patients} & pseudonyms


def test_type_since_and_group(client: Any, auth: Any, cohort: dict[str, Any]) -> None:
    compliance = auth("compliance")
    _, only = _run_export(client, compliance, _type="Observation,Patient")
    assert {o["type"] for o in only["output"]} == {"Observation", "Patient"}
    _, later = _run_export(client, compliance, _since=(NOW + timedelta(days=1)).isoformat())
    # Nothing received after tomorrow: no data rows, only pathway versions are older too.
    assert later["output"] == [] and later["error"] == []
    _, group = _run_export(client, compliance, path="/fhir/Group/pathway.copd/$export")
    assert {o["type"] for o in group["output"]} >= {"Patient", "Observation"}
    unknown = client.get(
        "/fhir/Group/pathway.no-such/$export", params=RELEASE, headers={**compliance, **ASYNC}
    )
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        ({"legalBasis": "because"}, "legalBasis"),
        ({"recipient": ""}, "recipient"),
        ({"purpose": ""}, "purpose"),
        ({"legalBasis": "rek-approval"}, "legalBasisReference"),
        ({"_type": "Patient,Encounter"}, "_type"),
        ({"_since": "yesterday"}, "_since"),
        ({"_outputFormat": "text/csv"}, "_outputFormat"),
        ({"purpose": "about 15076500565"}, "purpose"),
    ],
)
def test_kick_off_refusals_name_the_parameter(
    client: Any, auth: Any, change: dict[str, str], parameter: str
) -> None:
    response = client.get(
        "/fhir/$export", params={**RELEASE, **change}, headers={**auth("compliance"), **ASYNC}
    )
    assert response.status_code in (400, 422), response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "15076500565" not in response.text
    assert parameter in json.dumps(body)


def test_kick_off_needs_respond_async_and_the_right_role(client: Any, auth: Any) -> None:
    no_prefer = client.get("/fhir/$export", params=RELEASE, headers=auth("compliance"))
    assert no_prefer.status_code == 400 and "Prefer" in no_prefer.text
    for role in ("clinician", "integration", "ml-engineer"):
        response = client.get("/fhir/$export", params=RELEASE, headers={**auth(role), **ASYNC})
        assert response.status_code == 403


def test_status_and_files_only_for_the_client_that_asked(
    client: Any, auth: Any, cohort: dict[str, Any]
) -> None:
    job_id, manifest = _run_export(client, auth("compliance", subject="officer-a"))
    other = auth("compliance", subject="officer-b")
    assert client.get(f"/fhir/bulk-status/{job_id}", headers=other).status_code == 404
    assert client.get(manifest["output"][0]["url"], headers=other).status_code == 404
    admin = auth("admin")
    assert client.get(f"/fhir/bulk-status/{job_id}", headers=admin).status_code == 404


def test_other_organisation_exports_none_of_these_patients(
    client: Any, auth: Any, cohort: dict[str, Any]
) -> None:
    _, manifest = _run_export(client, auth("compliance", organisation="974557746"))
    assert not [o for o in manifest["output"] if o["type"] != "PlanDefinition"]
