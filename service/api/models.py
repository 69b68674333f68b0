"""The loaded model, and a reload that swaps it without downtime."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import ERRORS

router = APIRouter(prefix="/api/v1/models", tags=["models"], responses=ERRORS)


class ModelPublic(BaseModel):
    name: str
    version: str
    source: str
    loaded_at: float
    sha256: str
    feature_spec_hash: str
    metrics: dict[str, Any]
    training_data: dict[str, Any]
    synthetic_training_data: bool = True
    operating_points: dict[str, Any] = Field(
        default_factory=dict,
        description="Per pathway: the named operating points (threshold, validation figures "
        "with 95 % CIs) that pathways refer to by name",
    )


def _describe(request: Request) -> ModelPublic:
    loaded = request.app.state.models.current()
    manifest = loaded.model.manifest
    return ModelPublic(
        name=manifest.name,
        version=manifest.version,
        source=loaded.source,
        loaded_at=loaded.loaded_at,
        sha256=manifest.sha256,
        feature_spec_hash=manifest.feature_spec_hash,
        metrics=manifest.metrics,
        training_data=manifest.training_data,
        operating_points={
            pathway: entry.get("points", {})
            for pathway, entry in (
                (manifest.extra.get("operating_points") or {}).get("pathways") or {}
            ).items()
        },
    )


def _audit_reload(
    request: Request, old: str | None, new: str | None, status: int, override: str | None = None
) -> None:
    """An audit row that names the version before and after (besides the request's own row)."""
    from datetime import UTC, datetime

    from service.security.audit import AuditEvent

    principal = getattr(request.state, "principal", None)
    writer = getattr(request.app.state, "audit", None)
    if writer is None or principal is None:
        return
    what = f"model reload {old or 'none'} -> {new or 'refused'}"
    if override:
        what += f" (gate override: {override})"
    writer.submit(
        [
            AuditEvent(
                datetime.now(UTC),
                principal.subject,
                principal.role.value,
                principal.organisation,
                None,
                "model-reload",
                what[:200],
                "model-management",
                status,
            )
        ]
    )


@router.get(
    "",
    name="list_models",
    response_model=list[ModelPublic],
    responses={503: {"description": "No model loaded"}},
)
def list_models(request: Request) -> list[ModelPublic]:
    """The model in service (performance figures are on synthetic data)."""
    return [_describe(request)]


class ReloadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    override_reason: str | None = Field(
        default=None,
        min_length=10,
        max_length=300,
        pattern=r"^[^0-9]*(?:[0-9]{1,10}[^0-9]+)*[0-9]{0,10}$",  # no 11-digit runs (fnr)
        description="Load a registry version that the promotion gate rejected or never decided "
        "on. Audited with the version before and after; say why (no patient identifiers).",
    )


@router.post(
    "/reload",
    name="reload_models",
    response_model=ModelPublic,
    responses={503: {"description": "The new model could not be loaded; the old one still serves"}},
)
async def reload_models(request: Request, body: ReloadBody | None = None) -> ModelPublic:
    """Load the champion (or the artifact folder) again; in-flight requests finish on the old one.

    A registry version must carry the promotion gate's "promoted" decision; anything else is
    refused unless ``override_reason`` is given (audited). The new version must also carry every
    operating point that the pathways in force name.
    """
    from models.artifact import ArtifactError
    from service.errors import ModelNotReady

    registry = request.app.state.models
    previous = registry.current().model.version if registry.ready else None

    def operating_points_resolve(candidate: Any) -> None:
        """Every pathway in force must find its named operating points in the new version."""
        with request.app.state.sessions() as session:
            missing = request.app.state.services.pathways.unresolved_operating_points(
                session, candidate.points
            )
        if missing:
            detail = "; ".join(f"{pw} ({', '.join(names)})" for pw, names in missing.items())
            raise ArtifactError(
                f"model version {candidate.model.version} lacks operating points that pathways "
                f"in force name: {detail}"
            )

    override = body.override_reason if body else None
    try:
        loaded = await asyncio.to_thread(registry.load, operating_points_resolve, override)
    except ArtifactError as exc:
        _audit_reload(request, previous, None, 503, override)
        raise ModelNotReady(f"reload refused, previous model still serving: {exc}") from exc
    _audit_reload(request, previous, loaded.model.version, 200, override)
    request.app.state.metrics.model_info.clear()
    request.app.state.metrics.model_info.labels(loaded.model.name, loaded.model.version).set(1)
    return _describe(request)
