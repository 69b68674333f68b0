"""The ONNX runtime wrapper: one small interface (load, predict, ready, name, version)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.additive import INPUT_NAME, OUTPUT_NAMES
from models.artifact import MODEL_FILE, ArtifactError, Manifest
from models.features import N_FEATURES


@dataclass
class Prediction:
    probability: np.ndarray  # [N]
    logit: np.ndarray  # [N]
    contributions: np.ndarray  # [N, F]; intercept + row sum == logit
    intercept: float
    # Per-row intercepts when a per-pathway recalibration applies (models/recalibration.py).
    row_intercepts: np.ndarray | None = None

    def intercept_of(self, i: int) -> float:
        return float(self.intercept if self.row_intercepts is None else self.row_intercepts[i])


class OnnxRiskModel:
    """An additive ONNX model from an artifact folder, verified before it is loaded."""

    def __init__(self, folder: Path, intra_op_threads: int = 1) -> None:
        self.folder = Path(folder)
        self.intra_op_threads = intra_op_threads
        self.manifest: Manifest | None = None
        self._session: object | None = None

    @property
    def ready(self) -> bool:
        return self._session is not None

    @property
    def name(self) -> str:
        return self.manifest.name if self.manifest else "unloaded"

    @property
    def version(self) -> str:
        return self.manifest.version if self.manifest else "unloaded"

    def load(self) -> OnnxRiskModel:
        import onnxruntime as ort

        manifest = Manifest.read(self.folder)
        manifest.verify(self.folder)
        if manifest.kind != "additive":
            raise ArtifactError(
                f"model kind '{manifest.kind}' cannot be served: the service needs exact "
                "contributions (kind 'additive')"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                str(self.folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ArtifactError(
                f"onnxruntime cannot load {self.folder / MODEL_FILE}: {exc}"
            ) from exc
        outputs = {o.name for o in session.get_outputs()}
        if [i.name for i in session.get_inputs()] != [INPUT_NAME] or not set(
            OUTPUT_NAMES
        ) <= outputs:
            raise ArtifactError(
                f"{self.folder / MODEL_FILE} must take '{INPUT_NAME}' and emit {OUTPUT_NAMES}"
            )
        self.manifest, self._session = manifest, session
        return self

    def predict(self, X: np.ndarray) -> Prediction:
        if self._session is None or self.manifest is None:
            raise ArtifactError("model is not loaded")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != N_FEATURES:
            raise ValueError(f"expected a [N, {N_FEATURES}] feature matrix, got {X.shape}")
        probability, logit, contributions = self._session.run(  # type: ignore[attr-defined]
            list(OUTPUT_NAMES), {INPUT_NAME: X}
        )
        return Prediction(probability, logit, contributions, self.manifest.intercept)
