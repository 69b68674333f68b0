"""FastAPI dependencies: the one authorisation gate and the CurrentPrincipal alias."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import Depends, Request

from service.errors import Forbidden, Unauthorised
from service.security.audit import current_context, safe_patient_id
from service.security.policy import GUARDIAN_ROUTES, allowed_roles
from service.security.principal import Principal


def authorize(request: Request) -> None:
    """App-wide dependency: verify the bearer token and apply the route × role table."""
    route = request.scope.get("route")
    name = getattr(route, "name", None) or ""
    roles = allowed_roles(name, request.app.state.settings.public_metrics)
    if roles is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorised("a bearer token is required")
    principal = _verify(request, name, token.strip())
    request.state.principal = principal
    ctx = current_context()
    if ctx is not None:  # the audit middleware's per-request record (shared across threads)
        ctx.principal = principal
    if principal.role not in roles:
        raise Forbidden(f"role '{principal.role.value}' may not call {name}")
    if principal.guardian_proxy:
        child = _guardian_patient(request, name)
        # Bound to the principal: every query asks service.security.visibility, which then
        # returns this one patient whatever search parameter the request filters on.
        principal = replace(principal, represented_patient=child)
        request.state.principal = principal
        if ctx is not None:
            ctx.principal = principal


def _guardian_patient(request: Request, name: str) -> str:
    """A parent/guardian context reads only the FHIR outputs, and only for one named patient."""
    if name not in GUARDIAN_ROUTES:
        raise Forbidden("this route is not available when acting for a parent or guardian")
    named = [v for key in ("subject", "patient") for v in request.query_params.getlist(key)]
    child = safe_patient_id(named[0]) if len(named) == 1 else None
    if child is None:
        raise Forbidden("acting for a parent or guardian, name exactly one patient")
    # The patient row itself is checked when it is loaded (service.security.audit hooks).
    return child


def _verify(request: Request, route_name: str, token: str) -> Principal:
    """HelseID for every route; on the CDS Hooks routes also a trusted CDS client's own JWT."""
    cds = getattr(request.app.state, "cds_clients", None)
    if route_name.startswith("cds_") and cds is not None:
        from service.security.cds_client import unverified_issuer

        if cds.trusts(unverified_issuer(token)):
            # aud is the CDS service endpoint (feedback goes to the same service).
            url = str(request.url.replace(query="", fragment="")).rstrip("/")
            return cds.verify(token, [url, url.removesuffix("/feedback")])
    principal: Principal = request.app.state.verifier.verify(token)
    return principal


def current_principal(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise Unauthorised("a bearer token is required")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
