"""The pull API as a FHIR R4 server, exercised with FHIR conventions only (as DIPS reads it):
read by id, search by national identity number, paging, includes, strict handling, conditional
create and a CapabilityStatement that says only what is true.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.fhir_r4 import validate_r4
from tests.helpers import enrol, observation, post_fhir, questionnaire_response
from tests.service.interop.conftest import FNRS, NOW, _birth_date

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
FHIR = {"Accept": "application/fhir+json"}
STRICT = {**FHIR, "Prefer": "handling=strict"}


@pytest.fixture(scope="module")
def world(ro_client: Any, ro_auth: Any) -> dict[str, Any]:
    """Patient A: 4 SpO2 readings (the last one 84 %, red), a questionnaire answer; patient B: 2."""
    integration = ro_auth("integration")
    out: dict[str, Any] = {"patients": [], "observations": {}}
    for i, values in enumerate(((96, 95, 96, 84), (96, 97))):
        pid = enrol(
            ro_client, ro_auth("clinician"), identifier=FNRS[i], birth_date=_birth_date(FNRS[i])
        )["id"]
        out["patients"].append(pid)
        out["observations"][pid] = []
        for n, value in enumerate(values):
            when = NOW - timedelta(hours=len(values) - n)
            response = post_fhir(
                ro_client,
                "/fhir/Observation",
                observation(pid, "spo2", value, when, f"rs{i}-{n}"),
                integration,
            )
            assert response.status_code == 201, response.text
            out["observations"][pid].append(response)
    qr = post_fhir(
        ro_client,
        "/fhir/QuestionnaireResponse",
        questionnaire_response(out["patients"][0], NOW - timedelta(minutes=30), "rs-qr"),
        integration,
    )
    assert qr.status_code == 201, qr.text
    out["qr"] = qr
    return out


def get(client: Any, auth: Any, url: str, headers: dict[str, str] | None = None) -> Any:
    response = client.get(url, headers={**auth("integration"), **(headers or FHIR)})
    assert response.headers["content-type"].startswith("application/fhir+json"), response.text
    return response


def bundle_of(client: Any, auth: Any, url: str, headers: dict[str, str] | None = None) -> dict:
    response = get(client, auth, url, headers)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    validate_r4(bundle)
    assert bundle["type"] == "searchset"
    return bundle


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


# ---- read --------------------------------------------------------------------------------


def test_location_of_a_create_resolves_with_etag_and_server_meta(ro_client, ro_auth, world):
    created = world["observations"][world["patients"][0]][0]
    location = created.headers["location"]
    assert location.startswith("http://testserver/fhir/Observation/")
    assert location.endswith("/_history/1") and created.headers["etag"] == 'W/"1"'
    resource_url = location.rsplit("/_history/", 1)[0]
    read = get(ro_client, ro_auth, resource_url)
    assert read.status_code == 200, read.text
    body = read.json()
    validate_r4(body)
    assert read.headers["etag"] == 'W/"1"' and "last-modified" in read.headers
    assert body["id"] == created.json()["id"] and body["meta"]["versionId"] == "1"
    assert body["valueQuantity"]["value"] == 96


def test_the_sender_meta_is_never_echoed(ro_client, ro_auth, world):
    pid = world["patients"][1]
    obs = observation(pid, "heart_rate", 70, NOW - timedelta(minutes=5), "meta-echo")
    obs["meta"] = {"versionId": "9", "lastUpdated": "2022-01-01T00:00:00+00:00", "source": "x"}
    response = post_fhir(ro_client, "/fhir/Observation", obs, ro_auth("integration"))
    assert response.status_code == 201
    meta = response.json()["meta"]
    assert meta["versionId"] == "1" and "source" not in meta
    stamp = datetime.fromisoformat(meta["lastUpdated"])
    assert abs((stamp - datetime.now(UTC)).total_seconds()) < 3600


@pytest.mark.parametrize("rtype", ["Task", "RiskAssessment", "DetectedIssue", "Patient"])
def test_every_output_type_reads_by_id(ro_client, ro_auth, world, rtype):
    pid = world["patients"][0]
    if rtype == "Patient":
        rid = pid
    else:
        param = "subject" if rtype == "RiskAssessment" else "patient"
        found = matches(bundle_of(ro_client, ro_auth, f"/fhir/{rtype}?{param}=Patient/{pid}"))
        assert found, rtype
        rid = found[0]["id"]
    read = get(ro_client, ro_auth, f"/fhir/{rtype}/{rid}")
    assert read.status_code == 200, read.text
    validate_r4(read.json())
    assert read.json()["id"] == rid and read.headers["etag"].startswith('W/"')


def test_task_focus_and_risk_assessment_basis_resolve(ro_client, ro_auth, world):
    pid = world["patients"][0]
    [task] = matches(bundle_of(ro_client, ro_auth, f"/fhir/Task?patient=Patient/{pid}"))
    focus = get(ro_client, ro_auth, f"/fhir/{task['focus']['reference']}")
    assert focus.status_code == 200 and focus.json()["resourceType"] == "RiskAssessment"
    for basis in focus.json()["basis"]:
        resolved = get(ro_client, ro_auth, f"/fhir/{basis['reference']}")
        assert resolved.status_code == 200, basis
        assert resolved.json()["resourceType"] in ("Observation", "QuestionnaireResponse")
    assert any(b["reference"].startswith("QuestionnaireResponse/") for b in focus.json()["basis"])


def test_read_of_unknown_or_invisible_resource_is_404(ro_client, ro_auth, world):
    missing = get(ro_client, ro_auth, "/fhir/Observation/does-not-exist")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    # Another organisation's integration client does not see the resource at all.
    from service.security.principal import Role
    from service.security.tokens import issue_dev_token

    other = issue_dev_token(ro_client.app.state.settings, Role.INTEGRATION, "999888777")
    rid = world["observations"][world["patients"][0]][0].json()["id"]
    hidden = ro_client.get(f"/fhir/Observation/{rid}", headers={"Authorization": f"Bearer {other}"})
    assert hidden.status_code == 404


# ---- search ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "param", ["patient.identifier", "subject:identifier", "patient:identifier"]
)
def test_search_by_national_identity_number(ro_client, ro_auth, world, param):
    pid = world["patients"][0]
    rtype = "RiskAssessment"
    bundle = bundle_of(ro_client, ro_auth, f"/fhir/{rtype}?{param}={FNR}|{FNRS[0]}")
    found = matches(bundle)
    assert found and {r["subject"]["reference"] for r in found} == {f"Patient/{pid}"}
    assert bundle["total"] == len(found) == 5  # four readings and one questionnaire answer


def test_task_search_by_subject_and_identifier_returns_only_that_patient(ro_client, ro_auth, world):
    a, b = world["patients"]
    for url in (
        f"/fhir/Task?subject=Patient/{a}",
        f"/fhir/Task?patient:identifier={FNR}|{FNRS[0]}",
        f"/fhir/Task?subject:identifier={FNR}|{FNRS[0]}",
    ):
        found = matches(bundle_of(ro_client, ro_auth, url))
        assert [t["for"]["reference"] for t in found] == [f"Patient/{a}"], url
    assert b not in str(matches(bundle_of(ro_client, ro_auth, f"/fhir/Task?subject=Patient/{a}")))


def test_risk_assessment_patient_returns_only_that_patients(ro_client, ro_auth, world):
    b = world["patients"][1]
    bundle = bundle_of(ro_client, ro_auth, f"/fhir/RiskAssessment?patient=Patient/{b}")
    assert {r["subject"]["reference"] for r in matches(bundle)} == {f"Patient/{b}"}
    # B has two readings of its own (more if another test here sent B one): never A's five.
    assert bundle["total"] == len(matches(bundle)) >= 2
    everyone = bundle_of(ro_client, ro_auth, "/fhir/RiskAssessment")
    assert everyone["total"] > bundle["total"]


def test_unknown_parameter_strict_is_400_lenient_is_ignored_and_left_out(ro_client, ro_auth, world):
    a = world["patients"][0]
    url = f"/fhir/RiskAssessment?patient=Patient/{a}&code=bogus"
    strict = get(ro_client, ro_auth, url, STRICT)
    assert strict.status_code == 400
    issue = strict.json()["issue"][0]
    assert issue["expression"] == ["code"] and "not supported" in issue["diagnostics"]
    lenient = bundle_of(ro_client, ro_auth, url)
    self_query = dict(parse_qsl(urlsplit(link(lenient, "self")).query))
    assert "code" not in self_query and self_query["patient"] == f"Patient/{a}"
    outcome = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome[0]["resource"]["issue"][0]["expression"] == ["code"]
    assert lenient["total"] == 5  # the known parameter still applied
    # An unsupported _include is handled the same way.
    assert get(ro_client, ro_auth, f"{url[:-11]}&_include=Task:owner", STRICT).status_code == 400


def test_last_updated_prefixes_and_partial_dates(ro_client, ro_auth, world):
    a = world["patients"][0]
    base = f"/fhir/RiskAssessment?patient=Patient/{a}"
    today = datetime.now(UTC).date()
    total = bundle_of(ro_client, ro_auth, base)["total"]

    def count(expr: str) -> int:
        return int(bundle_of(ro_client, ro_auth, f"{base}&_lastUpdated={expr}")["total"])

    assert count(f"eq{today.isoformat()}") == total  # a date: the whole day
    assert count(today.isoformat()) == total  # eq is the default prefix
    assert count(f"eq{today:%Y-%m}") == total and count(f"eq{today.year}") == total
    assert count(f"gt{today.isoformat()}") == 0 and count(f"lt{today.isoformat()}") == 0
    assert count(f"ge{today.isoformat()}") == total and count(f"le{today.isoformat()}") == total
    yesterday = (today - timedelta(days=1)).isoformat()
    assert count(f"eq{yesterday}") == 0 and count(f"gt{yesterday}") == total
    for bad in ("ne2026-01-01", "2026-13", "2026-01-01T10:00"):
        assert get(ro_client, ro_auth, f"{base}&_lastUpdated={bad}").status_code == 400, bad


def test_count_total_and_paging_on_detected_issue(ro_client, ro_auth, world):
    a = world["patients"][0]
    everything = bundle_of(ro_client, ro_auth, f"/fhir/DetectedIssue?patient=Patient/{a}")
    total = everything["total"]
    assert total == len(matches(everything)) >= 2
    first = bundle_of(ro_client, ro_auth, f"/fhir/DetectedIssue?patient=Patient/{a}&_count=1")
    assert len(matches(first)) == 1 and first["total"] == total
    seen = [matches(first)[0]["id"]]
    url = link(first, "next")
    for _ in range(total):
        if url is None:
            break
        page = bundle_of(ro_client, ro_auth, url)
        seen += [r["id"] for r in matches(page)]
        url = link(page, "next")
    assert sorted(seen) == sorted(r["id"] for r in matches(everything))
    only_total = bundle_of(ro_client, ro_auth, f"/fhir/DetectedIssue?patient=Patient/{a}&_count=0")
    assert only_total["total"] == total and not matches(only_total)


def test_include_patient_and_basis_with_absolute_full_urls(ro_client, ro_auth, world):
    a = world["patients"][0]
    bundle = bundle_of(
        ro_client,
        ro_auth,
        f"/fhir/RiskAssessment?patient=Patient/{a}&_count=1"
        "&_include=RiskAssessment:subject&_include=RiskAssessment:basis",
    )
    [risk] = matches(bundle)
    included = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": e
        for e in bundle["entry"]
        if e["search"]["mode"] == "include"
    }
    assert f"Patient/{a}" in included
    assert {b["reference"] for b in risk["basis"]} <= set(included)
    for entry in bundle["entry"]:
        r = entry["resource"]
        assert entry["fullUrl"] == f"http://testserver/fhir/{r['resourceType']}/{r['id']}"
    patient = included[f"Patient/{a}"]["resource"]
    assert patient["identifier"] == [{"system": FNR, "value": FNRS[0]}]


# ---- writes as a FHIR server answers them --------------------------------------------------


def test_if_none_exist_is_honoured(ro_client, ro_auth, world):
    b = world["patients"][1]
    integration = ro_auth("integration")
    first = observation(b, "heart_rate", 71, NOW - timedelta(minutes=9), "ine-1")
    created = post_fhir(ro_client, "/fhir/Observation", first, integration)
    assert created.status_code == 201
    differing = copy.deepcopy(first)
    differing["valueQuantity"]["value"] = 99
    headers = {**integration, "If-None-Exist": "identifier=urn:oid:2.16.578.1.12.4.1.7.1|ine-1"}
    again = ro_client.post(
        "/fhir/Observation",
        content=json.dumps(differing),
        headers={**headers, "Content-Type": "application/fhir+json"},
    )
    # One match: 200 with the stored resource, nothing created or changed.
    assert again.status_code == 200, again.text
    assert again.json()["id"] == created.json()["id"]
    assert again.json()["valueQuantity"]["value"] == 71
    bad = ro_client.post(
        "/fhir/Observation",
        content=json.dumps(differing),
        headers={**integration, "If-None-Exist": "code=x", "Content-Type": "application/fhir+json"},
    )
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["If-None-Exist"]


def test_batch_response_entries_carry_full_url_and_fhirpath_errors(ro_client, ro_auth, world):
    b = world["patients"][1]
    good = observation(b, "heart_rate", 72, NOW - timedelta(minutes=8), "batch-ok")
    bad = observation(b, "heart_rate", 72, NOW - timedelta(minutes=8), "batch-bad")
    bad["identifier"] = "not-a-list"
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": good}, {"resource": bad}],
    }
    response = post_fhir(ro_client, "/fhir", bundle, ro_auth("integration"))
    assert response.status_code == 200
    ok, refused = response.json()["entry"]
    rid = ok["response"]["location"].split("/")[1]
    assert ok["fullUrl"] == f"http://testserver/fhir/Observation/{rid}"
    assert ok["response"]["etag"] == 'W/"1"'
    issue = refused["response"]["outcome"]["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].resource.identifier"]
    validate_r4(response.json())


# ---- CapabilityStatement --------------------------------------------------------------------


def test_capability_statement_is_derived_from_the_routes_and_true(ro_client, ro_auth, world):
    from service.api.fhir import fhir_routes

    statement = get(ro_client, ro_auth, "/fhir/metadata").json()
    validate_r4(statement)
    declared = {
        (r["type"], i["code"])
        for r in statement["rest"][0]["resource"]
        for i in r.get("interaction", [])
    }
    declared_operations = {o["name"] for o in statement["rest"][0].get("operation", [])} | {
        o["name"] for r in statement["rest"][0]["resource"] for o in r.get("operation", [])
    }
    served = set()
    operations = set()
    for method, path in fhir_routes(ro_client.app):
        parts = [p for p in path.split("/") if p][1:]
        if not parts or parts[0] == "metadata":
            continue
        if any(p.startswith("$") for p in parts):
            operations.add(next(p for p in parts if p.startswith("$"))[1:])
            continue
        if not parts[0][:1].isupper():
            continue  # not a resource type (e.g. the bulk export's status and file URLs)
        kind = {("POST", 1): "create", ("GET", 1): "search-type", ("GET", 2): "read"}
        served.add((parts[0], kind[(method, len(parts))]))
    assert declared == served
    assert declared_operations == operations
    assert {i["code"] for i in statement["rest"][0]["interaction"]} == {"batch", "transaction"}
    # Every declared search parameter is accepted under strict handling; every include too.
    a = world["patients"][0]
    samples = {"reference": f"Patient/{a}", "token": f"{FNR}|{FNRS[0]}", "number": "5"}
    samples["date"] = "ge2000-01-01"
    for resource in statement["rest"][0]["resource"]:
        for param in resource.get("searchParam", []):
            value = samples[param["type"]]
            if param["name"] == "status":
                value = "requested"
            url = f"/fhir/{resource['type']}?{param['name']}={value}"
            assert get(ro_client, ro_auth, url, STRICT).status_code == 200, url
        for include in resource.get("searchInclude", []):
            url = f"/fhir/{resource['type']}?_include={include}"
            assert get(ro_client, ro_auth, url, STRICT).status_code == 200, url
        if resource.get("conditionalCreate"):
            assert ("POST", f"/fhir/{resource['type']}") in fhir_routes(ro_client.app)
