"""Security test fixtures: a local OIDC issuer (key pairs + a JWKS served over HTTP)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from models.identifiers import person_number_for
from service.security.tokens import HPR_CLAIM, ORG_CLAIM
from tests.helpers import ORG

ISSUER = "https://helseid-sts.test.local"
AUDIENCE = "home-followup-triage"


class LocalIssuer:
    """Signs HelseID-shaped tokens with its keys and serves their public halves as a JWKS."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[Any, str]] = {}  # kid -> (private key, alg)
        self.published: list[str] = []
        self.requests = 0

    def add_key(self, kid: str, alg: str = "RS256", publish: bool = True) -> None:
        private = (
            ec.generate_private_key(ec.SECP256R1())
            if alg.startswith("ES")
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        self.keys[kid] = (private, alg)
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid in self.published:
            private, alg = self.keys[kid]
            algo: Any = (
                jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
            )
            jwk = algo.to_jwk(private.public_key(), as_dict=True)
            jwk.update({"kid": kid, "use": "sig", "alg": alg})
            out.append(jwk)
        return {"keys": out}

    def claims(self, role: str = "clinician", **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "pairwise-subject-1",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "scope": ["openid", f"triage/{role}"],
            HPR_CLAIM: "565501872",
            ORG_CLAIM: ORG,
            "client_id": "dips-arena-test",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        kid: str = "key-1",
        role: str = "clinician",
        headers: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        private, alg = self.keys[kid]
        return jwt.encode(
            self.claims(role, **overrides),
            private,
            algorithm=alg,
            headers={"kid": kid, "typ": "at+jwt", **(headers or {})},
        )


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One migrated SQLite file; each test gets a copy (migrating costs most of a test's setup)."""
    from service.db.engine import migrate

    path = tmp_path_factory.mktemp("template") / "triage.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(tmp_path: Any, migrated_template: Any) -> str:
    target = tmp_path / "triage.db"
    shutil.copyfile(migrated_template, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="module")
def issuer() -> LocalIssuer:
    local = LocalIssuer()
    local.add_key("key-1", "RS256")
    return local


@pytest.fixture(scope="module")
def jwks_url(issuer: LocalIssuer) -> Iterator[str]:
    """The issuer's JWKS over real HTTP on 127.0.0.1 (what PyJWKClient/httpx would fetch)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer.requests += 1
            body = json.dumps(issuer.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def oidc_client(
    tmp_path_factory: pytest.TempPathFactory,
    artifact_dir: Any,
    migrated_template: Any,
    jwks_url: str,
) -> Iterator[Any]:
    """The app in `oidc` mode against the local issuer (one per module: tokens only)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.config import Settings

    var = tmp_path_factory.mktemp("oidc")
    shutil.copyfile(migrated_template, var / "triage.db")
    settings = Settings(
        var_dir=var,
        model_dir=artifact_dir,
        environment="test",
        database_url=f"sqlite:///{var / 'triage.db'}",
        drift_schedule_hours=0,
        auth_mode="oidc",
        oidc_issuer=ISSUER,
        oidc_jwks_url=jwks_url,
        oidc_audience=AUDIENCE,
    )
    with TestClient(create_app(settings)) as client:
        # Keys the tests add appear at once (the refetch rate limit has its own unit test).
        client.app.state.verifier.jwks.min_refetch_interval_s = 0.0
        yield client


def flush_audit(client: Any) -> None:
    assert client.app.state.audit.flush(), "audit writer did not drain"


def make_fnr(birth: Any, individual: int) -> str:
    """A synthetic fødselsnummer with both classic check digits (the caller picks a valid range:
    000–499 for 1900–1999, 500–999 for 2000–2039)."""
    for ind in range(individual, individual + 200):
        number = person_number_for(birth, ind % 1000, synthetic_month=False)
        if number is not None:
            return number
    raise ValueError("no valid number in range")
