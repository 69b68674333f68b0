"""FHIR search as DIPS uses it: _count and next links, _lastUpdated, subject/patient, and a
CapabilityStatement that says what is supported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.fhir_r4 import validate_r4
from tests.helpers import enrol, observation, post_fhir
from tests.service.interop.conftest import FNRS, NOW, _birth_date

FHIR = {"Accept": "application/fhir+json"}


@pytest.fixture(scope="module")
def scored(ro_client, ro_auth):
    """Two patients; the first gets one assessment per reading (7), the second one."""
    integration = ro_auth("integration")
    ids = []
    for i, readings in enumerate((7, 1)):
        pid = enrol(
            ro_client, ro_auth("clinician"), identifier=FNRS[i], birth_date=_birth_date(FNRS[i])
        )["id"]
        for n in range(readings):
            when = NOW - timedelta(hours=readings - n)
            value = 85 if n == readings - 1 else 96
            response = post_fhir(
                ro_client,
                "/fhir/Observation",
                observation(pid, "spo2", value, when, f"q{i}-{n}"),
                integration,
            )
            assert response.status_code == 201
        ids.append(pid)
    return ids


def search(client, headers, url):
    response = client.get(url, headers={**headers, **FHIR})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    validate_r4(bundle)
    return bundle


def link(bundle, relation):
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


def follow(client, headers, url):
    """Every page from `url` on, following next links; returns (pages, resources)."""
    pages, resources = [], []
    while url:
        page = search(client, headers, url)
        pages.append(page)
        resources += [e["resource"] for e in page.get("entry", [])]
        url = link(page, "next")
    return pages, resources


def test_count_and_next_links_page_through_everything_once(ro_client, ro_auth, scored):
    headers = ro_auth("integration")
    pid = scored[0]
    pages, resources = follow(
        ro_client, headers, f"/fhir/RiskAssessment?subject=Patient/{pid}&_count=3"
    )
    assert [len(p.get("entry", [])) for p in pages] == [3, 3, 1]
    assert all(p["total"] == 7 for p in pages)
    ids = [r["id"] for r in resources]
    assert len(ids) == len(set(ids)) == 7
    stamps = [r["meta"]["lastUpdated"] for r in resources]
    assert stamps == sorted(stamps, reverse=True)  # newest first, across pages
    assert all(r["subject"]["reference"] == f"Patient/{pid}" for r in resources)
    # The next link keeps the search and moves the offset.
    query = dict(parse_qsl(urlsplit(link(pages[0], "next")).query))
    assert query == {"subject": f"Patient/{pid}", "_count": "3", "_offset": "3"}
    assert link(pages[-1], "next") is None and link(pages[0], "self")


def test_subject_and_patient_narrow_the_search(ro_client, ro_auth, scored):
    headers = ro_auth("integration")
    first, second = scored
    everything = search(ro_client, headers, "/fhir/RiskAssessment")
    assert everything["total"] == 8
    only_second = search(ro_client, headers, f"/fhir/RiskAssessment?subject=Patient/{second}")
    assert only_second["total"] == 1
    assert only_second["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{second}"
    tasks = search(ro_client, headers, f"/fhir/Task?patient=Patient/{first}")
    assert {e["resource"]["for"]["reference"] for e in tasks["entry"]} == {f"Patient/{first}"}
    issues = search(ro_client, headers, f"/fhir/DetectedIssue?patient=Patient/{second}")
    assert all(
        e["resource"]["patient"]["reference"] == f"Patient/{second}"
        for e in issues.get("entry", [])
    )


@pytest.mark.parametrize(
    "url",
    [
        "/fhir/RiskAssessment?subject=Observation/1",
        "/fhir/Task?patient=Patient/a/b",
        "/fhir/Task?status=cancelled",
        "/fhir/RiskAssessment?_lastUpdated=yesterday",
        "/fhir/RiskAssessment?_count=-1",
    ],
)
def test_bad_search_parameters_get_an_operation_outcome(ro_client, ro_auth, url):
    response = ro_client.get(url, headers={**ro_auth("integration"), **FHIR})
    assert response.status_code in (400, 422)
    assert response.json()["resourceType"] == "OperationOutcome"


def stamp_of(resource) -> datetime:
    return datetime.fromisoformat(resource["meta"]["lastUpdated"])


def test_last_updated_bounds_the_search(ro_client, ro_auth, scored):
    headers = ro_auth("integration")
    pid = scored[0]
    base = f"/fhir/RiskAssessment?subject=Patient/{pid}"
    _, everything = follow(ro_client, headers, base)
    stamps = sorted(stamp_of(r) for r in everything)
    middle = stamps[3]
    iso = middle.astimezone(UTC).isoformat().replace("+00:00", "Z")
    _, newer = follow(ro_client, headers, f"{base}&_lastUpdated=ge{iso}")
    assert sorted(stamp_of(r) for r in newer) == stamps[3:]
    _, older = follow(ro_client, headers, f"{base}&_lastUpdated=lt{iso}")
    assert sorted(stamp_of(r) for r in older) == stamps[:3]


def test_last_updated_with_a_utc_offset_means_the_same_instant(ro_client, ro_auth, scored):
    headers = ro_auth("integration")
    pid = scored[0]
    base = f"/fhir/RiskAssessment?subject=Patient/{pid}"
    _, everything = follow(ro_client, headers, base)
    stamps = sorted(stamp_of(r) for r in everything)
    oslo = stamps[3].astimezone(timezone(timedelta(hours=1))).isoformat()  # ...+01:00
    _, newer = follow(ro_client, headers, f"{base}&_lastUpdated=ge{oslo.replace('+', '%2B')}")
    assert sorted(stamp_of(r) for r in newer) == stamps[3:]


def test_a_range_of_two_last_updated_values_survives_paging(ro_client, ro_auth, scored):
    headers = ro_auth("integration")
    pid = scored[0]
    _, everything = follow(ro_client, headers, f"/fhir/RiskAssessment?subject=Patient/{pid}")
    stamps = sorted(stamp_of(r) for r in everything)
    low = stamps[1].astimezone(UTC).isoformat().replace("+00:00", "Z")
    high = stamps[5].astimezone(UTC).isoformat().replace("+00:00", "Z")
    pages, found = follow(
        ro_client,
        headers,
        f"/fhir/RiskAssessment?subject=Patient/{pid}"
        f"&_lastUpdated=ge{low}&_lastUpdated=lt{high}&_count=2",
    )
    assert sorted(stamp_of(r) for r in found) == stamps[1:5]
    assert len(pages) == 2


def test_task_paging_and_status(ro_client, ro_auth, scored):
    headers = ro_auth("integration")
    pages, tasks = follow(ro_client, headers, "/fhir/Task?status=requested&_count=1")
    assert len(tasks) == pages[0]["total"] == len(pages) >= 1
    assert {t["status"] for t in tasks} == {"requested"}
    assert len({t["id"] for t in tasks}) == len(tasks)


def test_capability_statement_says_what_the_searches_support(ro_client):
    response = ro_client.get("/fhir/metadata", headers=FHIR)
    assert response.status_code == 200
    statement = validate_r4(response.json())
    assert statement.fhirVersion.startswith("4.") and statement.kind == "instance"
    rest = statement.rest[0]
    assert rest.mode == "server"
    assert {i.code for i in rest.interaction} >= {"batch", "transaction"}
    by_type = {r.type: r for r in rest.resource}
    expected = {
        "RiskAssessment": {"subject", "_count", "_lastUpdated"},
        "Task": {"status", "patient", "_count", "_lastUpdated"},
        "DetectedIssue": {"patient", "_count", "_lastUpdated"},
    }
    for rtype, params in expected.items():
        assert {i.code for i in by_type[rtype].interaction} == {"search-type", "read"}
        assert {p.name for p in by_type[rtype].searchParam} >= params
    for rtype in ("Observation", "QuestionnaireResponse"):
        assert "create" in {i.code for i in by_type[rtype].interaction}
