"""Input safety on every endpoint: size, depth, content type, unknown fields, no 500s."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from service.security.middleware import is_json_media_type, json_depth
from service.security.policy import iter_routes
from tests.helpers import FNR_ADULT, ORG

PATIENT = {
    "identifier": FNR_ADULT,
    "birth_date": "1965-07-15",
    "sex": "female",
    "pathway": "copd",
    "organisation": ORG,
    "unit": "lungs",
}


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def test_json_depth_counts_containers_not_strings() -> None:
    assert json_depth(b"1") == 0
    assert json_depth(b'{"a": [1, {"b": 2}]}') == 3
    assert json_depth(json.dumps(_nested(50)).encode()) == 50
    assert json_depth(b'{"note": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ \\" {{{{"}') == 1


def test_json_media_types() -> None:
    assert is_json_media_type("application/json; charset=utf-8")
    assert is_json_media_type("application/fhir+json")
    assert not is_json_media_type("text/plain")
    assert not is_json_media_type("application/x-www-form-urlencoded")
    assert not is_json_media_type("")


@pytest.mark.parametrize("path", ["/api/v1/patients", "/fhir/Observation", "/fhir"])
def test_non_json_body_is_415(client: Any, auth: Any, path: str) -> None:
    for content_type in ("text/plain", "application/xml", None):
        headers = {**auth("admin")}
        if content_type:
            headers["Content-Type"] = content_type
        response = client.post(path, content=json.dumps(PATIENT).encode(), headers=headers)
        assert response.status_code == 415, (path, content_type, response.text)
    if path.startswith("/fhir"):
        assert response.json()["resourceType"] == "OperationOutcome"


def test_form_posts_are_refused_on_json_routes(client: Any, auth: Any) -> None:
    response = client.post("/api/v1/patients", data={"identifier": "x"}, headers=auth("admin"))
    assert response.status_code == 415


@pytest.mark.parametrize(
    "path", ["/api/v1/patients", "/fhir/Observation", "/api/v1/worklist/x/acknowledge"]
)
def test_deep_json_is_400(client: Any, auth: Any, path: str) -> None:
    body = json.dumps({"resourceType": "Observation", "extension": _nested(40)})
    response = client.post(
        path, content=body, headers={**auth("admin"), "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "deeper" in response.text


def test_body_too_large_is_413(make_settings: Any, database_url: str) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.security.principal import Role
    from service.security.tokens import issue_dev_token
    from tests.helpers import migrate_test_database as migrate

    settings = make_settings(database_url=database_url, max_body_bytes=2048)
    migrate(settings.resolved_database_url)
    token = issue_dev_token(settings, Role.ADMIN)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    big = json.dumps({**PATIENT, "unit": "x" * 5000}).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed count decides
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    with TestClient(create_app(settings)) as c:
        assert c.post("/api/v1/patients", content=big, headers=headers).status_code == 413
        assert c.post("/api/v1/patients", content=chunks(), headers=headers).status_code == 413
        assert (
            c.post(
                "/fhir",
                content=chunks(),
                headers={**headers, "Content-Type": "application/fhir+json"},
            ).status_code
            == 413
        )


def test_unknown_fields_are_refused_on_our_models(client: Any, auth: Any) -> None:
    response = client.post(
        "/api/v1/patients", json={**PATIENT, "is_admin": True}, headers=auth("admin")
    )
    assert response.status_code == 422 and "is_admin" in response.text


def test_our_request_models_forbid_unknown_fields(client: Any) -> None:
    """Every JSON request body of /api/v1 declares additionalProperties: false (extra=forbid).

    FHIR, CDS Hooks and V2 bodies are excluded: those standards allow extensions.
    """
    spec = client.get("/openapi.json").json()
    schemas = spec.get("components", {}).get("schemas", {})
    lax, checked = [], []
    for path, item in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, op in item.items():
            content = (op.get("requestBody") or {}).get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(schema)):
                checked.append(ref)
                if (
                    schemas.get(ref, {}).get("type") == "object"
                    and schemas[ref].get("additionalProperties") is not False
                ):
                    lax.append(f"{method.upper()} {path}: {ref}")
    assert "PatientCreate" in checked
    assert not lax, "request models without extra='forbid': " + ", ".join(lax)


def _body_routes(app: Any) -> list[tuple[str, str]]:
    out = []
    for r in iter_routes(app):
        for m in r.methods:
            if m in ("POST", "PUT", "PATCH"):
                out.append((m, re.sub(r"\{[^}]+\}", str(uuid.UUID(int=3)), r.path)))
    return out


def test_malformed_bodies_never_give_500(client: Any, auth: Any) -> None:
    headers = auth("admin")
    bodies = [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b"null",
        b'"text"',
        b"1e999999",
        b'{"a":' * 5 + b"1" + b"}" * 5,
        json.dumps({"resourceType": 7}).encode(),
        b'{"identifier": "' + FNR_ADULT.encode() + b'"',
    ]
    failures = []
    for method, path in _body_routes(client.app):
        for body in bodies:
            for ctype in ("application/json", "application/fhir+json"):
                response = client.request(
                    method, path, content=body, headers={**headers, "Content-Type": ctype}
                )
                if response.status_code >= 500:
                    failures.append(f"{method} {path} {body[:20]!r}: {response.status_code}")
                if FNR_ADULT in response.text:
                    failures.append(f"{method} {path} echoed the identifier")
    assert not failures, "\n".join(failures)


def test_extreme_integer_query_values_never_give_500(client: Any, auth: Any) -> None:
    """Every integer query parameter in the OpenAPI, at 10**20 and -1 (a database overflow)."""
    spec = client.get("/openapi.json").json()
    headers = auth("admin")
    failures, tried = [], 0
    for path, item in spec["paths"].items():
        url = re.sub(r"\{[^}]+\}", str(uuid.UUID(int=3)), path)
        for method, op in item.items():
            for param in op.get("parameters", []):
                if param.get("in") != "query":
                    continue
                schemas = [param.get("schema", {}), *param.get("schema", {}).get("anyOf", [])]
                if not any(s.get("type") == "integer" for s in schemas):
                    continue
                for value in (10**20, -1):
                    tried += 1
                    response = client.request(
                        method.upper(), url, params={param["name"]: value}, headers=headers
                    )
                    if response.status_code >= 500:
                        failures.append(f"{method.upper()} {path}?{param['name']}={value}")
    assert tried >= 5
    assert not failures, failures
