"""HelseID client credentials with private_key_jwt, for calling DIPS from the outbox.

HelseID does not accept client secrets: the client proves itself with a short-lived JWT signed by
its private key (RFC 7523 client assertion; iss = sub = client id, aud = the token endpoint, a
fresh jti, exp a minute ahead). The access token is cached until shortly before it expires, and
dropped when DIPS answers 401 (a rotated key or a revoked token), so the next try fetches anew.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 60
# Renew this long before the token's own expiry, so a request never carries a token that
# expires in flight.
RENEW_BEFORE_S = 30


class TokenError(Exception):
    """The token endpoint refused or could not be reached (the message names no secret)."""


@dataclass
class HelseIdClient:
    token_url: str
    client_id: str
    private_key_pem: bytes
    key_id: str | None = None
    scope: str | None = None

    def __post_init__(self) -> None:
        key = serialization.load_pem_private_key(self.private_key_pem, password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            self._algorithm = "RS256"
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            self._algorithm = "ES256"
        else:
            raise ValueError("the HelseID client key must be RSA or EC")
        self._key: Any = key
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> HelseIdClient | None:
        if not settings.outbox_token_url:
            return None
        if not (settings.outbox_client_id and settings.outbox_client_key):
            raise ValueError(
                "TRIAGE_OUTBOX_TOKEN_URL needs TRIAGE_OUTBOX_CLIENT_ID and TRIAGE_OUTBOX_CLIENT_KEY"
            )
        return cls(
            settings.outbox_token_url,
            settings.outbox_client_id,
            Path(settings.outbox_client_key).read_bytes(),
            settings.outbox_client_key_id,
            settings.outbox_scope,
        )

    def client_assertion(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "jti": str(uuid.uuid4()),
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + ASSERTION_LIFETIME_S,
        }
        headers = {"typ": "client-authentication+jwt"}
        if self.key_id:
            headers["kid"] = self.key_id
        return jwt.encode(claims, self._key, algorithm=self._algorithm, headers=headers)

    async def access_token(self, http: httpx.AsyncClient) -> str:
        async with self._lock:
            if self._token and time.monotonic() < self._expires_at:
                return self._token
            form = {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.client_assertion(),
            }
            if self.scope:
                form["scope"] = self.scope
            try:
                response = await http.post(self.token_url, data=form)
            except httpx.HTTPError as exc:
                raise TokenError(f"token endpoint unreachable: {type(exc).__name__}") from exc
            if response.status_code != 200:
                raise TokenError(f"token endpoint answered {response.status_code}")
            body = response.json()
            token = body.get("access_token")
            if not isinstance(token, str) or not token:
                raise TokenError("token endpoint sent no access_token")
            lifetime = float(body.get("expires_in", 300))
            self._token = token
            self._expires_at = time.monotonic() + max(lifetime - RENEW_BEFORE_S, 0.0)
            return token

    def forget(self) -> None:
        """Drop the cached token (DIPS answered 401)."""
        self._token = None
        self._expires_at = 0.0
