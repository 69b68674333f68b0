"""Template rendering: one Jinja environment, the translator and the page frame per request."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from service.security.policy import ROUTE_ROLES
from service.security.principal import Principal
from service.web.i18n import DEFAULT_LANGUAGE, LANGUAGES, Translator, negotiate
from service.web.session import LANG_COOKIE, csrf_token

TEMPLATES_DIR = Path(__file__).parent / "templates"
# The evidently report is embedded in a sandboxed frame of our own origin; nothing else is framed.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-src 'self'; frame-ancestors 'self'; "
    "form-action 'self' http: https:; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# Navigation: (route name, msgid). Shown only to roles the route × role table lets through.
NAV: tuple[tuple[str, str], ...] = (
    ("web_worklist", "Worklist"),
    ("web_pathways", "Pathways"),
    ("web_models", "Models"),
    ("web_monitoring", "Monitoring"),
    ("web_audit", "Audit log"),
)


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(["html", "svg"]),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    return env


def language(request: Request) -> str:
    chosen = request.scope.get("web_lang_cookie") or request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return str(chosen)
    return negotiate(request.headers.get("accept-language")) or DEFAULT_LANGUAGE


def translator(request: Request) -> Translator:
    return Translator(language(request))


def principal_of(request: Request) -> Principal | None:
    return getattr(request.state, "principal", None)


def may(principal: Principal | None, route_name: str) -> bool:
    return principal is not None and principal.role in ROUTE_ROLES.get(route_name, frozenset())


_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def _route_paths(app: Any) -> dict[str, str]:
    """Route name -> path template, built once per app (Starlette's url_for walks every route on
    every call, which cost a second per worklist of 200 items)."""
    paths = getattr(app.state, "web_route_paths", None)
    if paths is None:
        from service.security.policy import iter_routes

        paths = {r.name: r.path for r in iter_routes(app) if r.name}
        paths["web_static"] = "/web/static/{path:path}"
        app.state.web_route_paths = paths
    return paths


def url_path(request: Request, name: str, **params: Any) -> str:
    """The path of a named route, with its parameters quoted (for templates and redirects)."""
    template = _route_paths(request.app)[name]

    def value(match: re.Match[str]) -> str:
        return quote(str(params[match.group(1)]), safe="/" if name == "web_static" else "")

    return _PARAM.sub(value, template)


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    t = translator(request)
    principal = principal_of(request)
    route = request.scope.get("route")
    current = getattr(route, "name", "")
    nav = [(name, label, url_path(request, name)) for name, label in NAV if may(principal, name)]
    ctx: dict[str, Any] = {
        "request": request,
        "t": t,
        "_": t.gettext,
        "ngettext": t.ngettext,
        "lang": t.lang,
        "languages": LANGUAGES,
        "principal": principal,
        "csrf_token": csrf_token(request),
        "nav": nav,
        "current_route": current,
        "may": lambda name: may(principal, name),
        "url": lambda name, **params: url_path(request, name, **params),
    }
    ctx.update(context or {})
    body = environment().get_template(template).render(ctx)
    return HTMLResponse(body, status_code, headers={**SECURITY_HEADERS, **(headers or {})})
