"""Writing model artifact folders (model.onnx + manifest.json + reference.npz + model card)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from models.additive import StepFunctionModel
from models.artifact import (
    MODEL_CARD_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    Manifest,
    sha256_file,
)
from models.features import FEATURE_NAMES, feature_spec_hash

# Keys of reference.npz (documented for the monitoring job; no organisation or patient ids).
REFERENCE_KEYS = (
    "features",
    "feature_names",
    "probability",
    "logit",
    "label",
    "pathway",
    "age_band",
    "sex",
)


def write_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like numpy.savez_compressed, with fixed zip timestamps so equal data gives equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buffer.getvalue())


def reference_sample(
    X: np.ndarray, model: StepFunctionModel, y: np.ndarray, meta: Any, max_rows: int, seed: int
) -> dict[str, np.ndarray]:
    """A fixed random sample of training rows with predictions, for drift monitoring."""
    rng = np.random.default_rng(seed)
    n = len(X)
    idx = np.sort(rng.choice(n, size=min(max_rows, n), replace=False))
    features = np.asarray(X[idx], dtype=np.float32)
    logit = model.logit(features.astype(np.float64))
    with np.errstate(over="ignore"):  # a very negative logit overflows exp: probability 0
        probability = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return {
        "features": features,
        "feature_names": np.asarray(FEATURE_NAMES),
        "probability": probability,
        "logit": logit.astype(np.float32),
        "label": np.asarray(y)[idx].astype(np.int8),
        "pathway": np.asarray(meta["pathway"])[idx].astype(str),
        "age_band": np.asarray(meta["age_band"])[idx].astype(str),
        "sex": np.asarray(meta["sex"])[idx].astype(str),
    }


def write_artifact(
    folder: Path,
    model: StepFunctionModel,
    *,
    name: str,
    version: str,
    created: str,
    metrics: dict[str, Any] | None = None,
    training_data: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    reference: dict[str, np.ndarray] | None = None,
    model_card: str | None = None,
    onnx_bytes: bytes | None = None,
) -> Path:
    """Write a complete, verified artifact folder and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / MODEL_FILE
    model_path.write_bytes(onnx_bytes if onnx_bytes is not None else model.to_onnx(name))
    manifest = Manifest(
        name=name,
        version=version,
        kind="additive",
        sha256=sha256_file(model_path),
        feature_spec_hash=feature_spec_hash(),
        feature_names=list(FEATURE_NAMES),
        intercept=float(model.intercept),
        created=created,
        metrics=metrics or {},
        training_data=training_data or {},
        extra=extra or {},
    )
    manifest.write(folder)
    if reference is not None:
        write_npz_deterministic(folder / REFERENCE_FILE, reference)
    if model_card is not None:
        (folder / MODEL_CARD_FILE).write_text(model_card, encoding="utf-8")
    manifest.verify(folder)
    return folder
