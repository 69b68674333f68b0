"""Scoring on an external Open Inference Protocol (KServe V2) endpoint, such as Triton.

At regional scale a platform team may run the model on Triton or KServe (`triage export-triton`).
The service then keeps everything but the matrix product: it still reads and verifies the artifact's
manifest here (version, feature spec, intercept), so explanations stay exact, and it checks at load
time that the endpoint serves that same model. Each call has a timeout; a slow or failing endpoint
answers ModelNotReady (503), never a half-scored record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np

from models.additive import INPUT_NAME, OUTPUT_NAMES
from models.artifact import ArtifactError, Manifest
from models.features import N_FEATURES
from models.runtime import OnnxRiskModel, Prediction
from service.errors import ModelNotReady


class RemoteV2RiskModel(OnnxRiskModel):
    """The same interface as the in-process model; the arithmetic happens at `base_url`/v2."""

    def __init__(
        self, folder: Path, base_url: str, *, timeout_s: float, token: str | None = None
    ) -> None:
        super().__init__(folder)
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers)
        self._remote_ready = False

    @property
    def ready(self) -> bool:
        return self._remote_ready

    def _get(self, path: str) -> Any:
        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            raise ModelNotReady(f"inference endpoint {self.base_url} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise ModelNotReady(f"inference endpoint answered {response.status_code} on {path}")
        return response.json()

    def load(self) -> RemoteV2RiskModel:
        manifest = Manifest.read(self.folder)
        manifest.verify(self.folder)
        meta = self._get(f"/v2/models/{manifest.name}")
        inputs = {i.get("name"): i for i in meta.get("inputs", [])}
        outputs = {o.get("name") for o in meta.get("outputs", [])}
        shape = inputs.get(INPUT_NAME, {}).get("shape", [])
        if len(shape) != 2 or shape[1] != N_FEATURES or not set(OUTPUT_NAMES) <= outputs:
            raise ArtifactError(
                f"{self.base_url} serves {manifest.name} with inputs {list(inputs)} and outputs "
                f"{sorted(outputs)}; expected '{INPUT_NAME}' [-1, {N_FEATURES}] and {OUTPUT_NAMES}"
            )
        versions = [str(v) for v in meta.get("versions", [])]
        if versions and manifest.version not in versions:
            raise ArtifactError(
                f"{self.base_url} serves versions {versions}, not {manifest.version}: the "
                "explanations would not match the scores"
            )
        self.manifest, self._remote_ready = manifest, True
        return self

    def predict(self, X: np.ndarray) -> Prediction:
        if self.manifest is None:
            raise ArtifactError("model is not loaded")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != N_FEATURES:
            raise ValueError(f"expected a [N, {N_FEATURES}] feature matrix, got {X.shape}")
        body = {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "datatype": "FP32",
                    "shape": list(X.shape),
                    # JSON has no NaN: a missing value travels as null (V2 JSON convention here)
                    "data": [None if np.isnan(v) else float(v) for v in X.ravel()],
                }
            ],
            "outputs": [{"name": name} for name in OUTPUT_NAMES],
        }
        try:
            response = self._client.post(f"/v2/models/{self.manifest.name}/infer", json=body)
        except httpx.HTTPError as exc:
            raise ModelNotReady(f"inference endpoint {self.base_url} failed: {exc}") from exc
        if response.status_code != 200:
            raise ModelNotReady(
                f"inference endpoint answered {response.status_code}: {response.text[:200]}"
            )
        tensors = {o["name"]: o for o in response.json()["outputs"]}
        probability, logit, contributions = (
            np.asarray(tensors[name]["data"], dtype=np.float64).reshape(tensors[name]["shape"])
            for name in OUTPUT_NAMES
        )
        return Prediction(probability, logit, contributions, self.manifest.intercept)
