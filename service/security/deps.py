"""FastAPI dependencies: the one authorisation gate and the CurrentPrincipal alias."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.errors import Forbidden, Unauthorised
from service.security.policy import allowed_roles
from service.security.principal import Principal


def authorize(request: Request) -> None:
    """App-wide dependency: verify the bearer token and apply the route × role table."""
    route = request.scope.get("route")
    name = getattr(route, "name", None) or ""
    roles = allowed_roles(name)
    if roles is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorised("a bearer token is required")
    principal = request.app.state.verifier.verify(token.strip())
    request.state.principal = principal
    if principal.role not in roles:
        raise Forbidden(f"role '{principal.role.value}' may not call {name}")


def current_principal(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise Unauthorised("a bearer token is required")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
