"""CDS Hooks 2.0 client JWTs ("Trusting CDS Clients"), accepted beside HelseID on /cds-services.

The CDS client (e.g. DIPS) signs a short JWT per call with its own key, published as a JWKS:
header `alg` ES384 or RS384 and a `kid`; claims `iss` (the client, configured in
TRIAGE_CDS_CLIENT_JWKS), `aud` (the CDS service endpoint being called), `exp` (at most five
minutes ahead), `iat` and `jti` (never seen before within its lifetime). The caller becomes an
integration principal of the organisation configured for that issuer.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt

from service.errors import Unauthorised
from service.security.principal import Principal, Role
from service.security.tokens import JwksCache

ALGORITHMS = ["ES384", "RS384"]  # the specification's two
MAX_LIFETIME_S = 300


def unverified_issuer(token: str) -> str | None:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    iss = claims.get("iss")
    return iss if isinstance(iss, str) else None


class CdsClientVerifier:
    def __init__(self, settings: Any) -> None:
        self.organisations: dict[str, str] = dict(settings.cds_client_organisations)
        self.jwks = {
            iss: JwksCache(url, algorithms=ALGORITHMS)
            for iss, url in settings.cds_client_jwks.items()
        }
        self.leeway_s = settings.oidc_clock_skew_s
        self._seen: dict[str, float] = {}  # jti -> expiry (per replica)
        self._lock = threading.Lock()

    def trusts(self, issuer: str | None) -> bool:
        return issuer is not None and issuer in self.jwks

    def verify(self, token: str, audiences: list[str]) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorised("malformed CDS client JWT") from exc
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorised("a CDS client JWT must be signed with ES384 or RS384")
        kid = header.get("kid")
        issuer = unverified_issuer(token)
        if not isinstance(kid, str) or not kid or issuer is None or issuer not in self.jwks:
            raise Unauthorised("CDS client JWT from an unknown client or without a key id")
        key = self.jwks[issuer].key(kid).key
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=audiences,
                issuer=issuer,
                leeway=self.leeway_s,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.InvalidAudienceError as exc:
            raise Unauthorised("CDS client JWT is for another CDS service endpoint") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorised("CDS client JWT signature or claims are invalid") from exc
        if claims["exp"] - claims["iat"] > MAX_LIFETIME_S + self.leeway_s:
            raise Unauthorised("CDS client JWT lives longer than five minutes")
        self._once(str(claims["jti"]), float(claims["exp"]))
        organisation = self.organisations.get(issuer)
        if not organisation:
            raise Unauthorised("no organisation is configured for this CDS client")
        subject = str(claims.get("sub") or issuer)[:64]
        return Principal(
            subject=subject, role=Role.INTEGRATION, organisation=organisation, units=None
        )

    def _once(self, jti: str, expires: float) -> None:
        now = time.time()
        with self._lock:
            for old in [j for j, exp in self._seen.items() if exp < now - self.leeway_s]:
                del self._seen[old]
            if jti in self._seen:
                raise Unauthorised("CDS client JWT was already used (jti replayed)")
            self._seen[jti] = expires
