"""Sign-in: the OIDC authorization-code flow with PKCE (authlib), and the development issuer.

Development mode offers the same flow against a local issuer: its authorize endpoint shows a role
picker, returns a short-lived signed one-time code, and its token endpoint exchanges the code
(with the PKCE verifier) for the same development JWT that ``triage token`` prints. The callback
verifies the token with ``app.state.verifier`` exactly as the API does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from typing import Annotated, Any
from urllib.parse import urlencode, urlparse

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool

from service.errors import BadRequest, NotFound, Unauthorised
from service.security.principal import Role
from service.web.i18n import LANGUAGES
from service.web.render import render
from service.web.session import (
    end_server_session,
    get_session,
    lang_cookie_header,
    open_server_session,
)

router = APIRouter(prefix="/web", include_in_schema=False)
# The bare address `make run` prints leads to the pages.
root_router = APIRouter(include_in_schema=False)

DEV_CLIENT_ID = "triage-web"
CODE_LIFETIME_S = 60
# Roles a person can sign in with on the pages (integration clients are systems, not people).
PERSON_ROLES = (Role.CLINICIAN, Role.ML_ENGINEER, Role.COMPLIANCE, Role.ADMIN)
HOME_BY_ROLE = {
    Role.CLINICIAN: "web_worklist",
    Role.ADMIN: "web_worklist",
    Role.ML_ENGINEER: "web_models",
    Role.COMPLIANCE: "web_monitoring",
}


def _settings(request: Request) -> Any:
    return request.app.state.settings


def _safe_next(value: str | None) -> str:
    """Only a local /web path: an open redirect after sign-in would be a phishing tool."""
    if not value or not value.startswith("/web") or value.startswith("//") or "\\" in value:
        return ""
    parsed = urlparse(value)
    return value if not parsed.scheme and not parsed.netloc else ""


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _code_serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_settings(request).session_secret, salt="triage-dev-issuer-code")


class _UsedCodes:
    """One-time use of authorization codes (process memory: the dev issuer runs in one process)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, code: str) -> bool:
        now = time.monotonic()
        with self._lock:
            for old in [c for c, t in self._seen.items() if now - t > 2 * CODE_LIFETIME_S]:
                del self._seen[old]
            if code in self._seen:
                return False
            self._seen[code] = now
            return True


def _used_codes(request: Request) -> _UsedCodes:
    used = getattr(request.app.state, "web_dev_codes", None)
    if used is None:
        used = request.app.state.web_dev_codes = _UsedCodes()
    return used


async def _endpoints(request: Request) -> dict[str, str]:
    """authorize/token endpoints: our dev issuer, or the OIDC issuer's discovery document."""
    settings = _settings(request)
    if settings.auth_mode == "dev":
        return {
            "authorization_endpoint": str(request.url_for("web_dev_authorize")),
            "token_endpoint": "http://dev-issuer.internal/web/dev-issuer/token",
            "client_id": DEV_CLIENT_ID,
            "scope": "openid",
        }
    client_id = settings.oidc_client_id
    if not (settings.oidc_issuer and client_id):
        raise BadRequest(
            "web sign-in is not configured (TRIAGE_OIDC_ISSUER and TRIAGE_OIDC_CLIENT_ID)"
        )
    cached = getattr(request.app.state, "web_oidc_metadata", None)
    if cached is None:
        import httpx

        url = settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
        transport = getattr(request.app.state, "web_oidc_transport", None)
        async with httpx.AsyncClient(timeout=5.0, transport=transport) as client:
            response = await client.get(url)
            response.raise_for_status()
            cached = request.app.state.web_oidc_metadata = response.json()
    scope = settings.oidc_web_scope
    return {
        "authorization_endpoint": cached["authorization_endpoint"],
        "token_endpoint": cached["token_endpoint"],
        "client_id": client_id,
        "scope": scope,
    }


def _client(request: Request, endpoints: dict[str, str]) -> Any:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    settings = _settings(request)
    kwargs: dict[str, Any] = {}
    if settings.auth_mode == "dev":
        import httpx

        # The local issuer lives in this very app: exchange the code in-process.
        kwargs["transport"] = httpx.ASGITransport(app=request.app)
    else:
        # Tests hand in a transport that plays the issuer; production uses the network.
        transport = getattr(request.app.state, "web_oidc_transport", None)
        if transport is not None:
            kwargs["transport"] = transport
    secret = settings.oidc_client_secret
    return AsyncOAuth2Client(
        client_id=endpoints["client_id"],
        client_secret=secret,
        token_endpoint_auth_method="client_secret_post" if secret else "none",
        scope=endpoints["scope"],
        redirect_uri=str(request.url_for("web_callback")),
        code_challenge_method="S256",
        timeout=5.0,
        **kwargs,
    )


@root_router.get("/", name="web_root")
def web_root() -> Response:
    return RedirectResponse("/web", 303)


@router.get("", name="web_home")
def web_home(request: Request) -> Response:
    """The start page: the signed-in user's home page, or the sign-in page."""
    user = get_session(request).get("user")
    if not user:
        return RedirectResponse(request.url_for("web_sign_in").path, 303)
    name = HOME_BY_ROLE.get(Role(user["role"]), "web_sign_in")
    return RedirectResponse(request.url_for(name).path, 303)


@router.get("/sign-in", name="web_sign_in")
def web_sign_in(
    request: Request, next: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    user = get_session(request).get("user")
    return render(request, "sign_in.html", {"next": _safe_next(next), "user": user})


@router.get("/sign-in/start", name="web_sign_in_start")
async def web_sign_in_start(
    request: Request, next: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    """Begin the authorization-code flow: state and PKCE verifier go into the session."""
    from authlib.common.security import generate_token

    endpoints = await _endpoints(request)
    verifier = generate_token(64)
    async with _client(request, endpoints) as client:
        url, state = client.create_authorization_url(
            endpoints["authorization_endpoint"], code_verifier=verifier
        )
    get_session(request)["oauth"] = {"state": state, "verifier": verifier, "next": _safe_next(next)}
    return RedirectResponse(url, 303)


@router.get("/callback", name="web_callback")
async def web_callback(
    request: Request,
    code: Annotated[str, Query(max_length=4000)] = "",
    state: Annotated[str, Query(max_length=200)] = "",
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The issuer sends the browser back here: check state, exchange the code, verify the token."""
    session = get_session(request)
    pending = session.pop("oauth", None)
    if error:
        raise Unauthorised(f"sign-in was not completed: {error}")
    if not pending or not state or not hmac.compare_digest(str(pending.get("state")), state):
        raise BadRequest("sign-in state does not match; start again", location="state")
    endpoints = await _endpoints(request)
    async with _client(request, endpoints) as client:
        try:
            token = await client.fetch_token(
                endpoints["token_endpoint"], code=code, code_verifier=pending["verifier"]
            )
        except Exception as exc:  # authlib raises OAuthError, httpx network errors
            raise Unauthorised("the issuer refused the sign-in code") from exc
    access_token = str(token.get("access_token", ""))
    principal = request.app.state.verifier.verify(access_token)  # as the API verifies
    session.clear()  # a fresh session (and CSRF token) after sign-in: no session fixation
    session["sid"] = await run_in_threadpool(
        open_server_session, request.app.state.sessions, principal.subject
    )
    session["token"] = access_token
    session["user"] = {
        "subject": principal.subject,
        "role": principal.role.value,
        "name": principal.display_name or principal.subject,
    }
    target = (
        pending.get("next") or request.url_for(HOME_BY_ROLE.get(principal.role, "web_sign_in")).path
    )
    return RedirectResponse(target, 303)


@router.post("/sign-out", name="web_sign_out")
def web_sign_out(request: Request) -> Response:
    session = get_session(request)
    end_server_session(request.app.state.sessions, session.get("sid"))
    session.clear()
    response = RedirectResponse(request.url_for("web_sign_in").path + "?signed_out=1", 303)
    return response


@router.post("/language", name="web_language")
def web_language(
    request: Request,
    lang: Annotated[str, Form(max_length=8)],
    next: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    """Remember the chosen language in a cookie (a year) and go back to the page."""
    if lang not in LANGUAGES:
        raise BadRequest(f"unknown language '{lang}'", location="lang")
    target = _safe_next(next) or request.url_for("web_home").path
    response = RedirectResponse(target, 303)
    response.headers.append("set-cookie", lang_cookie_header(lang))
    return response


# ---- the development issuer --------------------------------------------------------------------


def _dev_only(request: Request) -> None:
    if _settings(request).auth_mode != "dev" or _settings(request).environment == "production":
        raise NotFound("the development issuer is switched off")


def _check_authorize_params(
    request: Request,
    response_type: str,
    client_id: str,
    redirect_uri: str,
    code_challenge: str,
    code_challenge_method: str,
) -> None:
    if response_type != "code":
        raise BadRequest("response_type must be 'code'", location="response_type")
    if client_id != DEV_CLIENT_ID:
        raise BadRequest("unknown client_id", location="client_id")
    if redirect_uri != str(request.url_for("web_callback")):
        raise BadRequest("redirect_uri is not registered for this client", location="redirect_uri")
    if code_challenge_method != "S256" or not 43 <= len(code_challenge) <= 128:
        raise BadRequest("PKCE with S256 is required", location="code_challenge")


@router.get("/dev-issuer/authorize", name="web_dev_authorize")
def web_dev_authorize(
    request: Request,
    response_type: Annotated[str, Query(max_length=20)] = "",
    client_id: Annotated[str, Query(max_length=100)] = "",
    redirect_uri: Annotated[str, Query(max_length=500)] = "",
    state: Annotated[str, Query(max_length=200)] = "",
    code_challenge: Annotated[str, Query(max_length=200)] = "",
    code_challenge_method: Annotated[str, Query(max_length=10)] = "",
    scope: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """The local issuer's sign-in page: pick a role (development only)."""
    _dev_only(request)
    _check_authorize_params(
        request, response_type, client_id, redirect_uri, code_challenge, code_challenge_method
    )
    params = {
        "response_type": response_type,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": code_challenge_method,
        "scope": scope,
    }
    return render(request, "dev_issuer.html", {"params": params, "roles": PERSON_ROLES})


@router.post("/dev-issuer/authorize", name="web_dev_authorize_submit")
def web_dev_authorize_submit(
    request: Request,
    role: Annotated[str, Form(max_length=32)],
    response_type: Annotated[str, Form(max_length=20)],
    client_id: Annotated[str, Form(max_length=100)],
    redirect_uri: Annotated[str, Form(max_length=500)],
    code_challenge: Annotated[str, Form(max_length=200)],
    code_challenge_method: Annotated[str, Form(max_length=10)],
    state: Annotated[str, Form(max_length=200)] = "",
    units: Annotated[str, Form(max_length=300)] = "",
    subject: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Issue a one-time code for the chosen role and send the browser back to the client."""
    _dev_only(request)
    _check_authorize_params(
        request, response_type, client_id, redirect_uri, code_challenge, code_challenge_method
    )
    if role not in {r.value for r in PERSON_ROLES}:
        raise BadRequest("choose one of the offered roles", location="role")
    unit_list = [u.strip() for u in units.split(",") if u.strip()][:20]
    code = _code_serializer(request).dumps(
        {
            "role": role,
            "units": unit_list,
            "subject": subject.strip()[:64] or None,
            "challenge": code_challenge,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
        }
    )
    query = urlencode({"code": code, "state": state})
    return RedirectResponse(f"{redirect_uri}?{query}", 303)


def _token_error(error: str, description: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        400,
        headers={"Cache-Control": "no-store"},
    )


@router.post("/dev-issuer/token", name="web_dev_token")
def web_dev_token(
    request: Request,
    grant_type: Annotated[str, Form(max_length=40)] = "",
    code: Annotated[str, Form(max_length=4000)] = "",
    redirect_uri: Annotated[str, Form(max_length=500)] = "",
    client_id: Annotated[str, Form(max_length=100)] = "",
    code_verifier: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """OAuth 2.0 token endpoint of the local issuer (RFC 6749 § 4.1.3 with RFC 7636 PKCE)."""
    from service.security.tokens import issue_dev_token

    _dev_only(request)
    if grant_type != "authorization_code":
        return _token_error("unsupported_grant_type", "only authorization_code")
    try:
        claims = _code_serializer(request).loads(code, max_age=CODE_LIFETIME_S)
    except BadSignature:
        return _token_error("invalid_grant", "the code is invalid or expired")
    if (
        not isinstance(claims, dict)
        or claims.get("client_id") != client_id
        or claims.get("redirect_uri") != redirect_uri
    ):
        return _token_error("invalid_grant", "the code was issued to another client")
    if not code_verifier or not hmac.compare_digest(
        _s256(code_verifier), str(claims.get("challenge"))
    ):
        return _token_error("invalid_grant", "PKCE verification failed")
    if not _used_codes(request).claim(code):
        return _token_error("invalid_grant", "the code was already used")
    settings = _settings(request)
    lifetime_s = 8 * 3600
    token = issue_dev_token(
        settings,
        Role(claims["role"]),
        units=claims.get("units") or None,
        subject=claims.get("subject"),
        lifetime_s=lifetime_s,
    )
    return JSONResponse(
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime_s,
            "scope": f"triage/{claims['role']}",
        },
        headers={"Cache-Control": "no-store"},
    )
