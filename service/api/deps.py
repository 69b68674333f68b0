"""Dependency aliases so route signatures read like prose."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.domain.container import Services
from service.errors import InvalidInput


def get_services(request: Request) -> Services:
    return request.app.state.services


def read_session(request: Request) -> Iterator[Session]:
    """A session for reads; writes use service.db.engine.transaction explicitly."""
    session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()


ServicesDep = Annotated[Services, Depends(get_services)]
ReadSession = Annotated[Session, Depends(read_session)]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid bearer token"},
    403: {"description": "The caller's role may not use this route"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "Not found (or not visible to the caller)"}
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid input; the message names the field"}
}


def parse_if_match(value: str | None) -> int | None:
    """If-Match: "3" (or W/"3", or *): the version the client saw; None = no condition."""
    if value is None or value.strip() == "*":
        return None
    tag = value.split(",", 1)[0].strip().removeprefix("W/").strip('"')
    if not tag.isascii() or not tag.isdigit() or len(tag) > 9:
        raise InvalidInput(
            'If-Match must be an ETag this service gave, e.g. "3" (a version)', location="If-Match"
        )
    return int(tag)
