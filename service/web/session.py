"""The web session: a signed, HttpOnly, Secure, SameSite=Lax cookie, and CSRF tokens.

The pages use the same bearer-token gate as the API (`service.security.deps.authorize`): this
middleware takes the access token from the session cookie and hands it to the app as an
``Authorization`` header, for paths under /web only. A cookie alone can therefore never call the
JSON API, and every page passes the same route × role table as the API.
SameSite=Lax (not Strict) because the OIDC issuer redirects back to us with a top-level GET that
must carry the cookie holding the PKCE verifier and state.

The cookie alone does not keep a session open: it names a server-side session (``web_sessions``)
that sign-out ends, so a copy of the cookie saved before sign-out opens nothing afterwards. The
check reads the primary database (not a replica), so a sign-out holds at once on every replica.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any, Protocol

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.db.engine import transaction
from service.db.tables import WebSession
from service.errors import BadRequest


class Responder(Protocol):
    """Wraps the ASGI send of one request (the web error pages)."""

    async def send(self, message: Message) -> None: ...


WEB_PREFIX = "/web"
STATIC_PREFIX = "/web/static"
SESSION_COOKIE = "triage_session"
LANG_COOKIE = "triage_lang"
SESSION_MAX_AGE_S = 8 * 3600  # a working shift; the access token expires no later
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def open_server_session(factory: sessionmaker[Session], subject: str) -> str:
    """Record a new signed-in session and return its id (for the cookie); sweep expired rows."""
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with transaction(factory) as tx:
        tx.execute(delete(WebSession).where(WebSession.expires_at < now - timedelta(days=1)))
        tx.add(
            WebSession(
                id_hash=_id_hash(session_id),
                subject=subject[:64],
                created_at=now,
                expires_at=now + timedelta(seconds=SESSION_MAX_AGE_S),
            )
        )
    return session_id


def end_server_session(factory: sessionmaker[Session], session_id: object) -> None:
    """Sign-out: the session ends on the server, whatever copies of the cookie exist."""
    if not isinstance(session_id, str) or not session_id:
        return
    with transaction(factory) as tx:
        tx.execute(
            update(WebSession)
            .where(WebSession.id_hash == _id_hash(session_id), WebSession.ended_at.is_(None))
            .values(ended_at=datetime.now(UTC))
        )


def server_session_open(factory: sessionmaker[Session], session_id: object) -> bool:
    if not isinstance(session_id, str) or not session_id:
        return False
    with factory() as tx:
        row = tx.get(WebSession, _id_hash(session_id))
        return (
            row is not None and row.ended_at is None and _aware(row.expires_at) > datetime.now(UTC)
        )


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="triage-web-session")


def session_cookie_header(value: str, max_age_s: int) -> bytes:
    return (
        f"{SESSION_COOKIE}={value}; Path={WEB_PREFIX}; Max-Age={max_age_s}; HttpOnly; "
        f"Secure; SameSite=Lax"
    ).encode("latin-1")


def lang_cookie_header(lang: str) -> str:
    return (
        f"{LANG_COOKIE}={lang}; Path=/; Max-Age={365 * 24 * 3600}; HttpOnly; Secure; SameSite=Lax"
    )


def get_session(request: Request) -> dict[str, Any]:
    """The mutable session dict of this request (changes are saved by the middleware)."""
    session = request.scope.get("web_session")
    if session is None:
        session = {}
        request.scope["web_session"] = session
    return session


def csrf_token(request: Request) -> str:
    """The synchroniser token of this session (created on first use)."""
    session = get_session(request)
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """Refuse an unsafe request whose form field (or header) does not carry the session's token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = get_session(request).get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not (
        isinstance(expected, str) and sent and hmac.compare_digest(expected.encode(), sent.encode())
    ):
        raise BadRequest(
            "the form is out of date or did not come from this site (CSRF check); "
            "reload the page and try again",
            location=CSRF_FIELD,
        )


def _cookies(scope: Scope) -> dict[str, str]:
    raw = b"; ".join(v for k, v in scope["headers"] if k == b"cookie").decode("latin-1")
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed cookie header from some other site's script: ignore it all
        return {}
    return {k: m.value for k, m in jar.items()}


class WebSessionMiddleware:
    """Loads and saves the session for /web paths and presents its token to the auth gate."""

    def __init__(
        self, app: ASGIApp, *, secret: str, responder: Callable[[Scope, Send], Responder]
    ) -> None:
        self.app = app
        self.serializer = _serializer(secret)
        # The page errors (a sign-in redirect, a readable error page) are the web package's,
        # handed in by install_web: the session only knows it sends through them.
        self.responder = responder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not (path == WEB_PREFIX or path.startswith(WEB_PREFIX + "/"))
            or path.startswith(STATIC_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        session: dict[str, Any] = {}
        raw = cookies.get(SESSION_COOKIE)
        if raw:
            try:
                loaded = self.serializer.loads(raw, max_age=SESSION_MAX_AGE_S)
                session = loaded if isinstance(loaded, dict) else {}
            except BadSignature:
                session = {}
        if session.get("token"):
            factory = getattr(scope["app"].state, "sessions", None)
            open_ = factory is not None and await run_in_threadpool(
                server_session_open, factory, session.get("sid")
            )
            if not open_:  # signed out elsewhere, expired, or a cookie from before sessions
                session = {}
                scope["web_session_ended"] = True
        before = json.dumps(session, sort_keys=True)
        if scope.get("web_session_ended"):
            before = "ended"  # the browser's cookie is stale: send it the cleared one
        scope["web_session"] = session
        scope["web_lang_cookie"] = cookies.get(LANG_COOKIE)
        # The session's token authenticates the page. Without one, a bearer header a program
        # sent itself stays (browsers never add one on their own, so it is no CSRF risk).
        token = session.get("token")
        if isinstance(token, str) and token:
            headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
            headers.append((b"authorization", f"Bearer {token}".encode("latin-1")))
            scope["headers"] = headers
        responder = self.responder(scope, send)

        async def saving_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                current = scope.get("web_session", session)
                if message["status"] == 401 and current.get("token"):
                    current.pop("token", None)  # expired or revoked: sign in again
                    current.pop("user", None)
                after = json.dumps(current, sort_keys=True)
                if after != before:
                    headers = list(message.get("headers", []))
                    if current:
                        value = self.serializer.dumps(current)
                        headers.append(
                            (b"set-cookie", session_cookie_header(value, SESSION_MAX_AGE_S))
                        )
                    else:
                        headers.append((b"set-cookie", session_cookie_header("", 0)))
                    message = {**message, "headers": headers}
            await responder.send(message)

        await self.app(scope, receive, saving_send)
