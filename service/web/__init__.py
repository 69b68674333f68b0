"""Server-rendered web pages (Jinja2) for clinicians, ML engineers and compliance officers.

`install_web(app)` adds the session middleware, the page routers (every one behind CSRF checks
and the app's route × role gate) and the static files. No front-end build step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, Request

STATIC_DIR = Path(__file__).parent / "static"
# Unsafe requests that are not browser forms: the OAuth token endpoint is called by the client
# (server to server) and protected by the PKCE verifier instead.
CSRF_EXEMPT_ROUTES = frozenset({"web_dev_token"})


async def csrf_protect(request: Request) -> None:
    from service.web.session import check_csrf

    route = request.scope.get("route")
    if getattr(route, "name", "") in CSRF_EXEMPT_ROUTES:
        return
    await check_csrf(request)


def install_web(app: Any) -> None:
    """Pages under /web, their static files under /web/static, and the signed session cookie."""
    from fastapi.staticfiles import StaticFiles

    from service.web import admin, auth, pages
    from service.web.errors import ErrorPageResponder
    from service.web.session import WebSessionMiddleware

    for router in (auth.root_router, auth.router, pages.router, admin.router):
        app.include_router(router, dependencies=[Depends(csrf_protect)])
    app.mount("/web/static", StaticFiles(directory=STATIC_DIR), name="web_static")
    app.add_middleware(
        WebSessionMiddleware,
        secret=app.state.settings.session_secret,
        responder=ErrorPageResponder,
    )
