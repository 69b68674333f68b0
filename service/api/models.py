"""The loaded model, and a reload that swaps it without downtime."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

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


@router.post(
    "/reload",
    name="reload_models",
    response_model=ModelPublic,
    responses={503: {"description": "The new model could not be loaded; the old one still serves"}},
)
async def reload_models(request: Request) -> ModelPublic:
    """Load the champion (or the artifact folder) again; in-flight requests finish on the old one."""
    from models.artifact import ArtifactError
    from service.errors import ModelNotReady

    try:
        loaded = await asyncio.to_thread(request.app.state.models.load)
    except ArtifactError as exc:
        raise ModelNotReady(f"reload refused, previous model still serving: {exc}") from exc
    request.app.state.metrics.model_info.clear()
    request.app.state.metrics.model_info.labels(loaded.model.name, loaded.model.version).set(1)
    return _describe(request)
