"""Errors that carry their HTTP status. One handler map (service.api.errors) turns them into responses."""

from __future__ import annotations

from typing import Any

from service.observability import redact


class TriageError(Exception):
    """Base error: subclasses say which HTTP status they mean."""

    status_code = 500
    code = "exception"  # FHIR OperationOutcome issue type

    def __init__(
        self,
        message: str,
        *,
        location: str | None = None,
        problems: list[dict[str, str]] | None = None,
    ) -> None:
        message = redact(message)  # a message quoting the input never carries a fødselsnummer
        super().__init__(message)
        self.message = message
        # Where in the input the problem is (FHIRPath-like, e.g. "Observation.valueQuantity.unit").
        self.location = location
        # Several located problems at once (a pathway draft): [{"path": ..., "message": ...}].
        self.problems = problems


class InvalidInput(TriageError):
    status_code = 422
    code = "invalid"


class BadRequest(TriageError):
    status_code = 400
    code = "structure"


class Unauthorised(TriageError):
    status_code = 401
    code = "login"


class Forbidden(TriageError):
    status_code = 403
    code = "forbidden"


class NotFound(TriageError):
    status_code = 404
    code = "not-found"


class Conflict(TriageError):
    status_code = 409
    code = "conflict"


class LostRace(Conflict):
    """Someone else changed the record first (another clinician, maybe on another replica).

    Carries the record's current state, so the client can show it instead of guessing; `actor`
    and `action` say who changed it and how ("someone else just acknowledged this").
    """

    def __init__(
        self, message: str, *, current: dict[str, Any], actor: str | None, action: str | None
    ) -> None:
        super().__init__(message)
        self.current = current
        self.actor = actor
        self.action = action


class PayloadTooLarge(TriageError):
    status_code = 413
    code = "too-costly"


class UnsupportedMediaType(TriageError):
    status_code = 415
    code = "not-supported"


class ModelNotReady(TriageError):
    status_code = 503
    code = "transient"


class Busy(TriageError):
    """The database kept refusing a write under contention (after bounded retries)."""

    status_code = 503
    code = "transient"


class PreconditionFailed(TriageError):
    """A conditional request matched more than one resource (FHIR If-None-Exist)."""

    status_code = 412
    code = "duplicate"
