"""JWT issuing (development only) and verification (development and HelseID/OIDC).

Verification uses PyJWT (no hand-rolled crypto): RS256/ES256/PS256 only, with iss, aud, exp and
nbf (small skew) checked and exactly one triage role scope required. Keys come from the issuer's
JWKS, cached with a time-to-live so rotation works both ways: a new `kid` triggers a (rate-limited)
refetch, and a key the issuer removed stops being accepted once the cache expires. Header fields
that point at keys (`jku`, `x5u`, `jwk`) are ignored: the key is always ours to choose.
The development issuer signs with its own RSA key kept under var/ and is refused in production.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
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
# The organisations (orgnr) an integration client sends for, besides orgnr_parent; a VKP or
# Helsenorge client serving several hospitals names each. Ignored for personnel tokens.
ORGANISATIONS_CLAIM = "triage/organisations"
# Set by the Helsenorge integration when it calls for a parent/guardian ("representasjon").
REPRESENTATION_CLAIM = "triage/representation"
GUARDIAN_REPRESENTATIONS = frozenset({"guardian", "parent", "foresatt"})
DEV_ORGANISATION = "983974899"  # an organisation number used only in development and tests

JwksFetcher = Callable[[str], dict[str, Any]]


def load_or_create_dev_key(path: Path) -> rsa.RSAPrivateKey:
    """The development signing key, created once even when several processes start together.

    Worker processes (and `triage token` beside a running server) must all sign and verify with
    the same key: the file is written to a temporary name and linked into place, so exactly one
    creator wins and everyone else reads the winner's key.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        try:
            os.link(tmp, path)  # atomic, and fails if another process got there first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    return loaded


def issue_dev_token(
    settings: Settings,
    role: Role,
    organisation: str = DEV_ORGANISATION,
    units: list[str] | None = None,
    subject: str | None = None,
    lifetime_s: int = 8 * 3600,
    representation: str | None = None,
    also_for: list[str] | None = None,
) -> str:
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
    if representation:
        claims[REPRESENTATION_CLAIM] = representation
    if also_for:
        claims[ORGANISATIONS_CLAIM] = list(also_for)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": DEV_KID})


def http_fetch_jwks(url: str) -> dict[str, Any]:
    """GET the issuer's JWKS (short timeout: a slow issuer must not hold requests for long)."""
    import httpx

    response = httpx.get(url, timeout=5.0, follow_redirects=False)
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError("JWKS document is not a JSON object")
    return data


class JwksCache:
    """The issuer's signing keys by kid; refreshed on expiry and (rate-limited) on a new kid."""

    def __init__(
        self,
        url: str,
        fetch: JwksFetcher = http_fetch_jwks,
        ttl_s: float = 600.0,
        min_refetch_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        algorithms: list[str] | None = None,
    ) -> None:
        self.url = url
        # Keys declaring another algorithm are skipped (CDS Hooks clients sign with ES384/RS384).
        self.algorithms = algorithms or ALLOWED_ALGORITHMS
        self._fetch = fetch
        self.ttl_s = ttl_s
        # Tokens naming random kids must not turn us into a load generator against the issuer.
        self.min_refetch_interval_s = min_refetch_interval_s
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def _refresh(self) -> None:
        try:
            document = self._fetch(self.url)
        except Exception as exc:  # network, HTTP or JSON errors: no key, so the token is refused
            raise Unauthorised("the issuer's signing keys could not be fetched") from exc
        self.fetches += 1
        keys: dict[str, Any] = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            if entry.get("alg") is not None and entry["alg"] not in self.algorithms:
                continue
            kid = entry.get("kid")
            try:
                keys[str(kid)] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type we do not use (e.g. a symmetric "oct" key) is skipped
        self._keys = keys
        self._fetched_at = self._clock()

    def key(self, kid: str) -> Any:
        """The signing key for ``kid``; refetches when the cache expired or the kid is new."""
        with self._lock:
            now = self._clock()
            age_s = None if self._fetched_at is None else now - self._fetched_at
            if (
                age_s is None
                or age_s >= self.ttl_s
                or (kid not in self._keys and age_s >= self.min_refetch_interval_s)
            ):
                self._refresh()
            jwk = self._keys.get(kid)
        if jwk is None:
            raise Unauthorised("token signed with an unknown key id")
        return jwk


class TokenVerifier:
    """Verifies bearer tokens against the dev key or the issuer's JWKS (cached, rotated)."""

    def __init__(self, settings: Settings, jwks_fetch: JwksFetcher | None = None) -> None:
        self.settings = settings
        self._dev_public_key: Any = None
        self.jwks: JwksCache | None = None
        if settings.auth_mode == "dev":
            if settings.environment == "production":  # Settings refuses this too; belt and braces
                raise RuntimeError("the development issuer is not allowed in production")
            self._dev_public_key = load_or_create_dev_key(settings.dev_key_path).public_key()
            self.issuer = DEV_ISSUER
        else:
            if not (settings.oidc_jwks_url and settings.oidc_issuer):
                raise RuntimeError("TRIAGE_OIDC_ISSUER and TRIAGE_OIDC_JWKS_URL must be set")
            self.jwks = JwksCache(settings.oidc_jwks_url, jwks_fetch or http_fetch_jwks)
            self.issuer = settings.oidc_issuer

    def _key_for(self, token: str) -> Any:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorised("malformed bearer token") from exc
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            # alg=none, HS256 "signed" with our public key, and every other algorithm.
            raise Unauthorised(f"token algorithm '{str(alg)[:16]}' is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorised("token names no key id")
        if self.jwks is None:
            if kid != DEV_KID:
                raise Unauthorised("token signed with an unknown key id")
            return self._dev_public_key
        jwk = self.jwks.key(kid)
        if jwk.algorithm_name is not None and jwk.algorithm_name != alg:
            raise Unauthorised("token algorithm does not match its key")
        return jwk.key

    def verify(self, token: str) -> Principal:
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ALLOWED_ALGORITHMS,
                audience=self.settings.oidc_audience,
                issuer=self.issuer,
                leeway=self.settings.oidc_clock_skew_s,
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_aud": True,
                    "verify_iss": True,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorised("token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorised("token is for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorised("token is from an unknown issuer") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthorised("token is not valid yet") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorised(f"token lacks the '{exc.claim}' claim") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorised("token signature or claims are invalid") from exc
        return principal_from_claims(claims)


def _scopes(claims: dict[str, Any]) -> list[str]:
    # HelseID (IdentityServer) emits scope as a JSON array; RFC 9068 as a space-separated string.
    raw = claims.get("scope", "")
    if isinstance(raw, list):
        return [str(s) for s in raw]
    return str(raw).split()


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    roles = [s.removeprefix(SCOPE_PREFIX) for s in _scopes(claims) if s.startswith(SCOPE_PREFIX)]
    valid = sorted({r for r in roles if r in Role._value2member_map_})
    if len(valid) != 1:
        raise Unauthorised("token must carry exactly one triage role scope")
    organisation = claims.get(ORG_CLAIM)
    if not organisation or not isinstance(organisation, str | int):
        raise Unauthorised("token carries no organisation number claim")
    # The HPR number (personnel) or the client id (systems). Never the pid claim: a fødselsnummer.
    subject = claims.get(HPR_CLAIM) or claims.get("client_id") or claims.get("sub")
    if not subject:
        raise Unauthorised("token identifies no user or client")
    units = claims.get(UNITS_CLAIM)
    if isinstance(units, str):
        units = [units]
    representation = claims.get(REPRESENTATION_CLAIM)
    role = Role(valid[0])
    also_for = claims.get(ORGANISATIONS_CLAIM) if role is Role.INTEGRATION else None
    if isinstance(also_for, str):
        also_for = [also_for]
    return Principal(
        subject=str(subject)[:64],
        role=role,
        organisation=str(organisation),
        units=tuple(str(u) for u in units) if isinstance(units, list) and units else None,
        display_name=str(claims.get("name", ""))[:200],
        guardian_proxy=isinstance(representation, str)
        and representation.lower() in GUARDIAN_REPRESENTATIONS,
        also_for=tuple(str(o)[:16] for o in also_for[:50]) if isinstance(also_for, list) else (),
    )
