"""JWT issuing (development only) and verification (development and HelseID/OIDC).

Verification uses PyJWT: RS256/ES256/PS256 only, with iss, aud, exp, nbf (small skew) and a role
scope required. The development issuer signs with its own RSA key kept under var/.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.config import Settings
from service.errors import Unauthorised
from service.security.principal import Principal, Role

ALLOWED_ALGORITHMS = ["RS256", "ES256", "PS256"]
DEV_ISSUER = "http://127.0.0.1/dev-issuer"
DEV_KID = "dev-key-1"
SCOPE_PREFIX = "triage/"
HPR_CLAIM = "helseid://claims/hpr/hpr_number"
ORG_CLAIM = "helseid://claims/client/claims/orgnr_parent"
UNITS_CLAIM = "triage/units"
DEV_ORGANISATION = "983974899"  # an organisation number used only in development and tests


def load_or_create_dev_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key


def issue_dev_token(settings: Settings, role: Role, organisation: str = DEV_ORGANISATION,
                    units: list[str] | None = None, subject: str | None = None,
                    lifetime_s: int = 8 * 3600) -> str:
    """A development token shaped like HelseID's; refused outside development."""
    if settings.environment == "production" or settings.auth_mode != "dev":
        raise RuntimeError("development tokens are only issued with TRIAGE_AUTH_MODE=dev")
    key = load_or_create_dev_key(settings.dev_key_path)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": DEV_ISSUER,
        "aud": settings.oidc_audience,
        "sub": subject or f"dev-{role.value}",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
        "scope": f"{SCOPE_PREFIX}{role.value}",
        HPR_CLAIM: subject or f"dev-{role.value}",
        ORG_CLAIM: organisation,
        "name": f"Development {role.value}",
    }
    if units:
        claims[UNITS_CLAIM] = list(units)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": DEV_KID})


class TokenVerifier:
    """Verifies bearer tokens against the dev key or the issuer's JWKS (cached, rotated)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._dev_public_key: Any = None
        self._jwks: jwt.PyJWKClient | None = None
        if settings.auth_mode == "dev":
            self._dev_public_key = load_or_create_dev_key(settings.dev_key_path).public_key()
            self.issuer = DEV_ISSUER
        else:
            assert settings.oidc_jwks_url and settings.oidc_issuer
            # PyJWKClient caches keys and refetches when a token names an unknown kid.
            self._jwks = jwt.PyJWKClient(settings.oidc_jwks_url, cache_keys=True, lifespan=3600)
            self.issuer = settings.oidc_issuer

    def _key_for(self, token: str) -> Any:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorised("malformed bearer token") from exc
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise Unauthorised(f"token algorithm '{header.get('alg')}' is not accepted")
        if self._jwks is None:
            if header.get("kid") != DEV_KID:
                raise Unauthorised("token signed with an unknown key id")
            return self._dev_public_key
        try:
            return self._jwks.get_signing_key(header.get("kid", "")).key
        except jwt.PyJWTError as exc:
            raise Unauthorised("token signed with an unknown key id") from exc

    def verify(self, token: str) -> Principal:
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token, key, algorithms=ALLOWED_ALGORITHMS, audience=self.settings.oidc_audience,
                issuer=self.issuer, leeway=self.settings.oidc_clock_skew_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorised("token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorised("token is for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorised("token is from an unknown issuer") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthorised("token is not valid yet") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorised("token signature or claims are invalid") from exc
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    scopes = str(claims.get("scope", "")).split()
    roles = [s.removeprefix(SCOPE_PREFIX) for s in scopes if s.startswith(SCOPE_PREFIX)]
    valid = [r for r in roles if r in Role._value2member_map_]
    if len(valid) != 1:
        raise Unauthorised("token must carry exactly one triage role scope")
    organisation = claims.get(ORG_CLAIM)
    if not organisation:
        raise Unauthorised("token carries no organisation number claim")
    units = claims.get(UNITS_CLAIM)
    return Principal(
        subject=str(claims.get(HPR_CLAIM) or claims["sub"]),
        role=Role(valid[0]),
        organisation=str(organisation),
        units=tuple(units) if units else None,
        display_name=str(claims.get("name", "")),
    )
