"""The sign-in against a (fake) OIDC issuer: discovery, authorization code + PKCE, token
verification through the app's own TokenVerifier (JWKS), as HelseID would be used."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

ISSUER = "https://issuer.example"
CLIENT_ID = "triage-web-test"


class FakeIssuer:
    """Discovery, token endpoint and JWKS; remembers the PKCE challenge per code."""

    def __init__(self, audience: str) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.audience = audience
        self.challenges: dict[str, str] = {}
        self.token_requests: list[dict[str, list[str]]] = []

    def jwks(self, _url: str) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}

    def issue_code(self, challenge: str) -> str:
        code = f"code-{len(self.challenges)}"
        self.challenges[code] = challenge
        return code

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{ISSUER}/connect/authorize",
                    "token_endpoint": f"{ISSUER}/connect/token",
                    "jwks_uri": f"{ISSUER}/jwks",
                },
            )
        if request.url.path == "/connect/token":
            form = parse_qs(request.content.decode())
            self.token_requests.append(form)
            verifier = form.get("code_verifier", [""])[0]
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
            if self.challenges.pop(form["code"][0], None) != challenge:
                return httpx.Response(400, json={"error": "invalid_grant"})
            now = int(time.time())
            token = jwt.encode(
                {
                    "iss": ISSUER,
                    "aud": self.audience,
                    "sub": "helseid-sub",
                    "iat": now,
                    "nbf": now,
                    "exp": now + 600,
                    "scope": ["openid", "triage/clinician"],
                    "helseid://claims/hpr/hpr_number": "565501872",
                    "helseid://claims/client/claims/orgnr_parent": "983974899",
                    "name": "Kari Nordmann",
                },
                self.key,
                algorithm="RS256",
                headers={"kid": "k1"},
            )
            return httpx.Response(
                200, json={"access_token": token, "token_type": "Bearer", "expires_in": 600}
            )
        return httpx.Response(404)


@pytest.fixture
def oidc(tmp_path: Path, artifact_dir: Path) -> Any:
    from service.app import create_app
    from service.config import Settings
    from service.security.tokens import TokenVerifier
    from tests.helpers import migrate_test_database as migrate

    settings = Settings(
        var_dir=tmp_path / "var",
        model_dir=artifact_dir,
        environment="test",
        drift_schedule_hours=0,
        database_url=f"sqlite:///{tmp_path / 'o.db'}",
        auth_mode="oidc",
        oidc_issuer=ISSUER,
        oidc_jwks_url=f"{ISSUER}/jwks",
    )
    # Until Settings has the field (see the report to the lead): the web client's registration.
    object.__setattr__(settings, "oidc_client_id", CLIENT_ID)
    migrate(settings.resolved_database_url)
    app = create_app(settings)
    issuer = FakeIssuer(settings.oidc_audience)
    with TestClient(app, base_url="https://testserver") as client:
        app.state.verifier = TokenVerifier(settings, jwks_fetch=issuer.jwks)
        app.state.web_oidc_transport = httpx.MockTransport(issuer.handler)
        yield client, issuer


def test_code_flow_with_pkce_against_an_oidc_issuer(oidc: Any) -> None:
    client, issuer = oidc
    start = client.get("/web/sign-in/start", follow_redirects=False)
    location = urlparse(start.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        f"{ISSUER}/connect/authorize"
    )
    query = parse_qs(location.query)
    assert query["client_id"] == [CLIENT_ID] and query["code_challenge_method"] == ["S256"]
    # The issuer authenticates the user and sends the browser back with a code.
    code = issuer.issue_code(query["code_challenge"][0])
    back = client.get(
        "/web/callback?" + urlencode({"code": code, "state": query["state"][0]}),
        follow_redirects=False,
    )
    assert back.status_code == 303 and back.headers["location"] == "/web/worklist"
    assert issuer.token_requests[0]["grant_type"] == ["authorization_code"]
    page = client.get("/web/worklist")
    assert page.status_code == 200 and "Kari Nordmann" in page.text


def test_a_token_the_verifier_refuses_does_not_sign_in(oidc: Any) -> None:
    client, issuer = oidc
    issuer.audience = "someone-else"
    start = client.get("/web/sign-in/start", follow_redirects=False)
    query = parse_qs(urlparse(start.headers["location"]).query)
    code = issuer.issue_code(query["code_challenge"][0])
    back = client.get(
        "/web/callback?" + urlencode({"code": code, "state": query["state"][0]}),
        headers={"Accept": "text/html"},
        follow_redirects=False,
    )
    assert back.status_code == 303 and back.headers["location"].startswith("/web/sign-in")
    assert client.get("/web/worklist", follow_redirects=False).status_code == 401


def test_dev_issuer_is_off_in_oidc_mode(oidc: Any) -> None:
    client, _ = oidc
    assert client.get("/web/dev-issuer/authorize").status_code == 404
    assert client.post("/web/dev-issuer/token", data={}).status_code == 404
