"""Authorisation: the route × role table is complete, documented and what the app enforces."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from service.security.matrix import MATRIX_PATH, render_access_matrix
from service.security.policy import (
    GUARDIAN_ROUTES,
    PUBLIC_ROUTES,
    ROUTE_ROLES,
    RouteInfo,
    iter_routes,
    unlisted_routes,
)
from service.security.principal import Principal, Role
from tests.helpers import ORG, enrol, observation, post_fhir
from tests.service.security.conftest import make_fnr

OTHER_ORG = "974557746"
# Path parameter values that reach the handler (a 404/422 from the handler is "allowed").
_PARAM_VALUES = {"action": "acknowledge", "name": "handmade-test-model", "version": "0.0.1"}


def _concrete(path: str) -> str:
    return re.sub(
        r"\{([^}:]+)(?::[^}]*)?\}",
        lambda m: _PARAM_VALUES.get(m.group(1), str(uuid.UUID(int=7))),
        path,
    )


def test_every_route_has_an_entry(app: Any) -> None:
    missing = unlisted_routes(app)
    assert not missing, (
        "routes missing from ROUTE_ROLES in service/security/policy.py (they are refused for "
        "everyone until listed): "
        + ", ".join(f"{r.name} ({'/'.join(r.methods)} {r.path})" for r in missing)
    )


def test_route_names_are_unique(app: Any) -> None:
    seen: dict[str, RouteInfo] = {}
    for route in iter_routes(app):
        if route.name in seen and seen[route.name].path != route.path:
            pytest.fail(
                f"two routes share the name {route.name!r}: {seen[route.name].path} and "
                f"{route.path}; the policy is keyed by name"
            )
        seen[route.name] = route


def test_guardian_routes_are_listed_routes() -> None:
    assert set(ROUTE_ROLES) >= GUARDIAN_ROUTES
    assert not GUARDIAN_ROUTES & PUBLIC_ROUTES


def test_access_matrix_document_is_in_sync(app: Any) -> None:
    expected = render_access_matrix(app)
    actual = MATRIX_PATH.read_text(encoding="utf-8") if MATRIX_PATH.exists() else ""
    assert actual == expected, (
        "governance/access-matrix.md is out of date: run "
        "`.venv/bin/python -m service.security.matrix`"
    )


def test_unlisted_route_is_denied_for_every_role(app: Any, client: Any, auth: Any) -> None:
    from fastapi import APIRouter

    extra = APIRouter()

    @extra.get("/api/v1/not-in-the-table", name="not_in_the_table")
    def not_in_the_table() -> dict[str, str]:
        return {"secret": "x"}

    client.app.include_router(extra)
    for role in Role:
        assert client.get("/api/v1/not-in-the-table", headers=auth(role.value)).status_code == 403


def test_route_role_matrix_is_enforced(client: Any, auth: Any) -> None:
    """Every route × (no token, each role): 401, 403, or through to the handler."""
    headers = {role: auth(role.value) for role in Role}
    failures = []
    for route in iter_routes(client.app):
        for method in route.methods:
            url = _concrete(route.path)
            anonymous = client.request(method, url)
            if route.name in PUBLIC_ROUTES:
                if anonymous.status_code in (401, 403):
                    failures.append(f"{method} {url} public but {anonymous.status_code}")
                continue
            if anonymous.status_code != 401:
                failures.append(f"{method} {url} without a token: {anonymous.status_code}")
            elif "WWW-Authenticate" not in anonymous.headers:
                failures.append(f"{method} {url} 401 without WWW-Authenticate")
            allowed = ROUTE_ROLES.get(route.name, frozenset())
            for role in Role:
                status = client.request(method, url, headers=headers[role]).status_code
                if role in allowed and status in (401, 403):
                    failures.append(f"{method} {url} as {role.value}: {status}, expected access")
                if role not in allowed and status != 403:
                    failures.append(f"{method} {url} as {role.value}: {status}, expected 403")
    assert not failures, "\n".join(failures)


def test_guardian_context_is_refused_outside_its_routes(
    client: Any, auth: Any, settings: Any
) -> None:
    from service.security.tokens import issue_dev_token

    token = issue_dev_token(settings, Role.INTEGRATION, representation="guardian")
    headers = {"Authorization": f"Bearer {token}"}
    for route in iter_routes(client.app):
        if route.name in PUBLIC_ROUTES or route.name in GUARDIAN_ROUTES:
            continue
        for method in route.methods:
            status = client.request(method, _concrete(route.path), headers=headers).status_code
            assert status == 403, f"{method} {route.path} as guardian proxy: {status}"


def test_metrics_can_require_a_token(make_settings: Any, database_url: str) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.security.tokens import issue_dev_token
    from tests.helpers import migrate_test_database as migrate

    settings = make_settings(database_url=database_url, public_metrics=False)
    migrate(settings.resolved_database_url)
    with TestClient(create_app(settings)) as private:
        assert private.get("/metrics").status_code == 401
        for role, expected in ((Role.CLINICIAN, 403), (Role.ML_ENGINEER, 200)):
            token = issue_dev_token(settings, role)
            got = private.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert got.status_code == expected


# ---- clinicians see only their own organisation and units ----------------------------------


@pytest.fixture
def two_units(client: Any, auth: Any) -> dict[str, Any]:
    integration = auth("integration")
    lungs = enrol(client, integration, "15076500565", unit="lungs", birth_date="1965-07-15")
    heart = enrol(
        client,
        integration,
        make_fnr(date(1990, 1, 1), 100),
        unit="heart",
        birth_date="1990-01-01",
        pathway="heart-failure",
    )
    now = datetime.now(UTC)
    for p, tag in ((lungs, "a"), (heart, "b")):
        for i, (name, value) in enumerate(
            [("spo2", 84), ("heart_rate", 128), ("respiratory_rate", 30), ("temperature", 39.5)]
        ):
            r = post_fhir(
                client,
                "/fhir/Observation",
                observation(p["id"], name, value, now, f"{tag}-{i}"),
                integration,
            )
            assert r.status_code == 201, r.text
    return {"lungs": lungs, "heart": heart}


def _worklist_patients(client: Any, headers: dict[str, str]) -> set[str]:
    response = client.get("/api/v1/worklist", headers=headers)
    assert response.status_code == 200, response.text
    return {item["patient"]["id"] for item in response.json()}


def _task_patients(client: Any, headers: dict[str, str]) -> set[str]:
    bundle = client.get("/fhir/Task", headers=headers).json()
    return {
        e["resource"]["for"]["reference"].removeprefix("Patient/") for e in bundle.get("entry", [])
    }


def test_clinician_sees_only_own_units(client: Any, auth: Any, two_units: dict[str, Any]) -> None:
    lungs, heart = two_units["lungs"]["id"], two_units["heart"]["id"]
    nurse = auth("clinician", units=["lungs"])
    assert client.get(f"/api/v1/patients/{lungs}", headers=nurse).status_code == 200
    assert client.get(f"/api/v1/patients/{heart}", headers=nurse).status_code == 404
    assert client.get(f"/api/v1/patients/{heart}/assessments", headers=nurse).status_code == 404
    assert _worklist_patients(client, nurse) == {lungs}
    assert _task_patients(client, nurse) == {lungs}
    ra = client.get(f"/fhir/RiskAssessment?subject=Patient/{heart}", headers=nurse).json()
    assert ra.get("entry", []) == []
    whole_org = auth("clinician")  # no unit claim: every unit of the organisation
    assert _worklist_patients(client, whole_org) == {lungs, heart}


def test_clinician_of_another_organisation_sees_nothing(
    client: Any, auth: Any, two_units: dict[str, Any]
) -> None:
    outsider = auth("clinician", organisation=OTHER_ORG)
    for p in two_units.values():
        assert client.get(f"/api/v1/patients/{p['id']}", headers=outsider).status_code == 404
    assert _worklist_patients(client, outsider) == set()
    assert _task_patients(client, outsider) == set()
    item = client.get("/api/v1/worklist", headers=auth("clinician")).json()[0]
    moved = client.post(f"/api/v1/worklist/{item['id']}/acknowledge", headers=outsider)
    assert moved.status_code == 404


def test_clinician_cannot_enrol_into_another_unit_or_organisation(client: Any, auth: Any) -> None:
    body = {
        "identifier": "15076500565",
        "birth_date": "1965-07-15",
        "sex": "female",
        "pathway": "copd",
        "organisation": ORG,
        "unit": "heart",
    }
    nurse = auth("clinician", units=["lungs"])
    assert client.post("/api/v1/patients", json=body, headers=nurse).status_code == 403
    body["organisation"] = OTHER_ORG
    assert client.post("/api/v1/patients", json=body, headers=auth("clinician")).status_code == 403


def test_principal_unit_rule() -> None:
    from service.security.visibility import in_scope

    nurse = Principal("1", Role.CLINICIAN, ORG, ("lungs",))
    assert in_scope(nurse, ORG, "lungs")
    assert not in_scope(nurse, ORG, "heart")
    assert not in_scope(nurse, OTHER_ORG, "lungs")
    assert in_scope(Principal("2", Role.ADMIN, ORG, None), OTHER_ORG, "x")
