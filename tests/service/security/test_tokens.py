"""Authentication: HelseID-style JWTs verified against a JWKS; the attacks are refused with 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from service.config import Settings
from service.errors import Unauthorised
from service.security.principal import Role
from service.security.tokens import (
    REPRESENTATION_CLAIM,
    JwksCache,
    TokenVerifier,
    issue_dev_token,
    principal_from_claims,
)
from tests.service.security.conftest import AUDIENCE, ISSUER, LocalIssuer

ROUTE = "/api/v1/worklist"  # clinician route


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def _get(client: Any, token: str) -> Any:
    return client.get(ROUTE, headers={"Authorization": f"Bearer {token}"})


def _assert_refused(response: Any, fragment: str) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer"), challenge
    assert 'error="invalid_token"' in challenge
    assert fragment in response.json()["detail"]


def test_valid_rs256_token_is_accepted(oidc_client: Any, issuer: LocalIssuer) -> None:
    assert _get(oidc_client, issuer.token()).status_code == 200


@pytest.mark.parametrize("alg", ["ES256", "PS256"])
def test_other_allowed_algorithms_are_accepted(
    oidc_client: Any, issuer: LocalIssuer, alg: str
) -> None:
    issuer.add_key(f"key-{alg}", alg)
    assert _get(oidc_client, issuer.token(f"key-{alg}")).status_code == 200


def test_alg_none_is_refused(oidc_client: Any, issuer: LocalIssuer) -> None:
    token = _unsigned({"alg": "none", "typ": "JWT", "kid": "key-1"}, issuer.claims())
    _assert_refused(_get(oidc_client, token), "algorithm 'none'")


def test_hs256_signed_with_the_public_key_is_refused(oidc_client: Any, issuer: LocalIssuer) -> None:
    # The classic key-confusion attack: HMAC keyed with the issuer's published RSA public key.
    public_pem = (
        issuer.keys["key-1"][0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": "key-1"}
    unsigned = _unsigned(header, issuer.claims()).rsplit(".", 1)[0]
    signature = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    _assert_refused(_get(oidc_client, f"{unsigned}.{_b64(signature)}"), "algorithm 'HS256'")


def test_expired_token_is_refused(oidc_client: Any, issuer: LocalIssuer) -> None:
    now = int(time.time())
    _assert_refused(
        _get(oidc_client, issuer.token(exp=now - 120, iat=now - 900, nbf=now - 900)), "expired"
    )


def test_small_clock_skew_is_tolerated(oidc_client: Any, issuer: LocalIssuer) -> None:
    now = int(time.time())
    assert _get(oidc_client, issuer.token(exp=now - 5, nbf=now + 5)).status_code == 200


def test_token_not_yet_valid_is_refused(oidc_client: Any, issuer: LocalIssuer) -> None:
    _assert_refused(_get(oidc_client, issuer.token(nbf=int(time.time()) + 600)), "not valid yet")


def test_other_audience_is_refused(oidc_client: Any, issuer: LocalIssuer) -> None:
    _assert_refused(_get(oidc_client, issuer.token(aud="another-api")), "another audience")


def test_wrong_issuer_is_refused(oidc_client: Any, issuer: LocalIssuer) -> None:
    _assert_refused(_get(oidc_client, issuer.token(iss="https://evil.example")), "issuer")


def test_unknown_kid_is_refused(oidc_client: Any, issuer: LocalIssuer) -> None:
    issuer.add_key("never-published", publish=False)
    _assert_refused(_get(oidc_client, issuer.token("never-published")), "unknown key id")


def test_foreign_key_under_a_known_kid_is_refused(oidc_client: Any, issuer: LocalIssuer) -> None:
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(issuer.claims(), attacker, algorithm="RS256", headers={"kid": "key-1"})
    _assert_refused(_get(oidc_client, token), "signature")


def test_embedded_jwk_header_is_ignored(oidc_client: Any, issuer: LocalIssuer) -> None:
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    embedded = jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    token = jwt.encode(
        issuer.claims(),
        attacker,
        algorithm="RS256",
        headers={"kid": "attacker", "jwk": embedded, "jku": "http://evil/jwks"},
    )
    _assert_refused(_get(oidc_client, token), "unknown key id")


def test_tampered_payload_is_refused(oidc_client: Any, issuer: LocalIssuer) -> None:
    head, _, sig = issuer.token(role="clinician").split(".")
    forged = _b64(json.dumps(issuer.claims("admin")).encode())
    _assert_refused(_get(oidc_client, f"{head}.{forged}.{sig}"), "signature")


@pytest.mark.parametrize(
    "scope, fragment",
    [
        (["openid", "profile"], "role scope"),
        ("triage/clinician triage/admin", "role scope"),
        ("triage/superuser", "role scope"),
    ],
)
def test_missing_or_ambiguous_role_scope_is_refused(
    oidc_client: Any, issuer: LocalIssuer, scope: Any, fragment: str
) -> None:
    _assert_refused(_get(oidc_client, issuer.token(scope=scope)), fragment)


def test_missing_exp_is_refused(oidc_client: Any, issuer: LocalIssuer) -> None:
    private, _ = issuer.keys["key-1"]
    claims = issuer.claims()
    del claims["exp"]
    token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "key-1"})
    _assert_refused(_get(oidc_client, token), "'exp'")


def test_missing_organisation_is_refused(oidc_client: Any, issuer: LocalIssuer) -> None:
    from service.security.tokens import ORG_CLAIM

    _assert_refused(_get(oidc_client, issuer.token(**{ORG_CLAIM: None})), "organisation")


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Bearer not.a.jwt", "Bearer a.b"]
)
def test_malformed_authorization_is_refused(oidc_client: Any, header: str) -> None:
    response = oidc_client.get(ROUTE, headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_jwks_rotation_over_http(oidc_client: Any, issuer: LocalIssuer) -> None:
    """The issuer publishes a new key and later retires the old one; both are honoured."""
    issuer.add_key("old", "RS256")
    assert _get(oidc_client, issuer.token("old")).status_code == 200
    cache = oidc_client.app.state.verifier.jwks
    before = issuer.requests
    issuer.add_key("new", "RS256")  # an unknown kid makes the cache refetch
    assert _get(oidc_client, issuer.token("new")).status_code == 200
    assert issuer.requests == before + 1
    issuer.published.remove("old")
    assert _get(oidc_client, issuer.token("old")).status_code == 200  # cached until expiry
    cache.ttl_s = 0.0  # the cached set expires
    try:
        _assert_refused(_get(oidc_client, issuer.token("old")), "unknown key id")
    finally:
        cache.ttl_s = 600.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_jwks_cache_rate_limits_unknown_kids_and_expires() -> None:
    local = LocalIssuer()
    local.add_key("k1")
    clock = FakeClock()
    cache = JwksCache(
        "http://issuer/jwks",
        fetch=lambda _url: local.jwks(),
        ttl_s=600,
        min_refetch_interval_s=30,
        clock=clock,
    )
    assert cache.key("k1") is not None and cache.fetches == 1
    for i in range(20):  # a flood of random kids costs at most one fetch per interval
        with pytest.raises(Unauthorised):
            cache.key(f"random-{i}")
    assert cache.fetches == 1
    local.add_key("k2")
    clock.now += 31
    assert cache.key("k2") is not None and cache.fetches == 2
    local.published.remove("k1")
    assert cache.key("k1") is not None  # still cached: retirement takes effect at expiry
    clock.now += 600
    with pytest.raises(Unauthorised):
        cache.key("k1")


def test_jwks_fetch_failure_refuses_rather_than_crashes() -> None:
    def broken(_url: str) -> dict[str, Any]:
        raise OSError("connection refused")

    cache = JwksCache("http://issuer/jwks", fetch=broken)
    with pytest.raises(Unauthorised, match="could not be fetched"):
        cache.key("k1")


def test_jwks_skips_symmetric_and_foreign_algorithm_keys() -> None:
    local = LocalIssuer()
    local.add_key("k1")
    document = local.jwks()
    document["keys"].append({"kty": "oct", "kid": "hmac", "k": _b64(b"secret"), "alg": "HS256"})
    cache = JwksCache("u", fetch=lambda _url: document)
    assert cache.key("k1") is not None
    with pytest.raises(Unauthorised):
        cache.key("hmac")


def test_verifier_unit_oidc_mode(tmp_path: Any) -> None:
    local = LocalIssuer()
    local.add_key("key-1")
    settings = Settings(
        var_dir=tmp_path,
        environment="test",
        auth_mode="oidc",
        oidc_issuer=ISSUER,
        oidc_jwks_url="http://unused",
        oidc_audience=AUDIENCE,
    )
    verifier = TokenVerifier(settings, jwks_fetch=lambda _url: local.jwks())
    principal = verifier.verify(local.token(role="compliance", scope="triage/compliance openid"))
    assert principal.role is Role.COMPLIANCE
    assert principal.subject == "565501872"  # the HPR number, never the pid claim


def test_pid_claim_is_never_the_subject() -> None:
    claims = {
        "scope": "triage/clinician",
        "helseid://claims/client/claims/orgnr_parent": "1",
        "helseid://claims/identity/pid": "15076500565",
        "sub": "pairwise-xyz",
    }
    assert principal_from_claims(claims).subject == "pairwise-xyz"


def test_guardian_representation_claim() -> None:
    claims = {
        "scope": "triage/integration",
        "helseid://claims/client/claims/orgnr_parent": "1",
        "client_id": "helsenorge",
        REPRESENTATION_CLAIM: "guardian",
    }
    assert principal_from_claims(claims).guardian_proxy
    claims[REPRESENTATION_CLAIM] = "self"
    assert not principal_from_claims(claims).guardian_proxy


# ---- development issuer and production -----------------------------------------------------


def test_production_refuses_the_development_issuer(tmp_path: Any) -> None:
    with pytest.raises(ValidationError, match="AUTH_MODE=dev"):
        Settings(
            var_dir=tmp_path,
            environment="production",
            auth_mode="dev",
            oidc_issuer=ISSUER,
            oidc_jwks_url="https://x/jwks",
            session_secret="s3cret",
        )


def test_production_refuses_missing_issuer_and_default_secret(tmp_path: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(var_dir=tmp_path, environment="production", auth_mode="oidc")
    assert "OIDC_ISSUER" in str(info.value) and "SESSION_SECRET" in str(info.value)


def test_production_with_oidc_is_accepted_and_issues_no_dev_tokens(tmp_path: Any) -> None:
    settings = Settings(
        var_dir=tmp_path,
        environment="production",
        auth_mode="oidc",
        oidc_issuer=ISSUER,
        oidc_jwks_url="https://x/jwks",
        session_secret="a-real-secret",
    )
    with pytest.raises(RuntimeError, match="development tokens"):
        issue_dev_token(settings, Role.ADMIN)


def test_verifier_refuses_dev_mode_in_production_even_if_settings_were_forced(
    tmp_path: Any,
) -> None:
    forced = Settings.model_construct(var_dir=tmp_path, environment="production", auth_mode="dev")
    with pytest.raises(RuntimeError, match="not allowed in production"):
        TokenVerifier(forced)


def test_dev_tokens_from_another_dev_key_are_refused(
    client: Any, make_settings: Any, tmp_path: Any
) -> None:
    other = make_settings(var_dir=tmp_path / "other-var")
    token = issue_dev_token(other, Role.CLINICIAN)
    _assert_refused(client.get(ROUTE, headers={"Authorization": f"Bearer {token}"}), "signature")
