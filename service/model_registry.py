"""Holds the loaded risk model and swaps it without downtime.

A request takes a reference to the current model once and uses it to the end, so an in-flight
request finishes on the model it started with while a reload installs the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.artifact import ArtifactError
from models.operating_points import ModelPoints
from models.runtime import OnnxRiskModel
from service.config import Settings
from service.errors import ModelNotReady
from service.remote_model import RemoteV2RiskModel

log = logging.getLogger("triage.models")

# (tracking URI, registered model name, destination folder, gate override reason) -> artifact
# folder. Injected by the composition root (service.cli passes
# training.registry.resolve_champion), so the service package itself never imports training or
# mlflow. It refuses a version whose registry tags say the gate rejected it or that carries no
# gate decision, unless an override reason is given.
ChampionResolver = Callable[[str, str, Path, str | None], Path]


@dataclass
class LoadedModel:
    model: OnnxRiskModel
    source: str  # "shipped:<path>" | "mlflow:models:/name@champion"
    loaded_at: float

    @property
    def points(self) -> ModelPoints:
        """This version's named operating points; pathways resolve their names against them."""
        manifest = self.model.manifest
        return ModelPoints.of(
            self.model.version,
            manifest.extra if manifest else {},
            f"{self.model.version}@{self.loaded_at}",
        )


class ModelRegistry:
    def __init__(
        self, settings: Settings, champion_resolver: ChampionResolver | None = None
    ) -> None:
        self.settings = settings
        self.champion_resolver = champion_resolver
        self._current: LoadedModel | None = None
        self._reload_lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._current is not None and self._current.model.ready

    def current(self) -> LoadedModel:
        current = self._current
        if current is None:
            raise ModelNotReady("no risk model is loaded")
        return current

    def _resolve(self, override_reason: str | None = None) -> tuple[Path, str]:
        uri = self.settings.mlflow_tracking_uri
        if not uri:
            return self.settings.model_dir, f"shipped:{self.settings.model_dir}"
        if self.champion_resolver is None:
            raise ModelNotReady(
                "TRIAGE_MLFLOW_TRACKING_URI is set but no registry resolver is "
                "configured; start the service with `triage serve`"
            )
        dest = self.settings.var_dir / "models" / f"champion-{int(time.time() * 1000)}"
        try:
            folder = self.champion_resolver(uri, self.settings.model_name, dest, override_reason)
        except ArtifactError:
            raise
        except Exception as exc:  # the registry refused (gate) or could not be read
            raise ArtifactError(str(exc)) from exc
        return folder, f"mlflow:models:/{self.settings.model_name}@champion"

    def _model(self, folder: Path) -> OnnxRiskModel:
        if self.settings.inference_url:
            return RemoteV2RiskModel(
                folder,
                self.settings.inference_url,
                timeout_s=self.settings.inference_timeout_s,
                token=self.settings.inference_token,
            )
        return OnnxRiskModel(folder, self.settings.onnx_intra_op_threads)

    def load(
        self,
        accept: Callable[[LoadedModel], None] | None = None,
        override_reason: str | None = None,
    ) -> LoadedModel:
        """Load (or reload) the model; the old one keeps serving until the new one is ready.

        ``accept`` may refuse the candidate (raise ArtifactError) before it replaces the model
        in service, e.g. when a pathway names an operating point the new version lacks.
        """
        with self._reload_lock:
            folder, source = self._resolve(override_reason)
            model = self._model(folder).load()
            loaded = LoadedModel(model=model, source=source, loaded_at=time.time())
            if accept is not None:
                accept(loaded)
            previous, self._current = self._current, loaded
            log.info(
                "model %s %s loaded from %s (previous: %s)",
                model.name,
                model.version,
                source,
                previous.model.version if previous else "none",
            )
            return loaded
