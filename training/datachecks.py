"""Data tests run before any training: schema, label set, nulls and patient-level leakage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.features import FEATURE_NAMES

REQUIRED_META = ("patient", "pathway", "age_band", "sex", "time_s")


class DataCheckError(ValueError):
    """The dataset must not be trained on; the message says why."""


def check_training_data(
    X: Any,
    y: np.ndarray,
    meta: Any,
    splits: dict[str, np.ndarray],
    feature_names: Sequence[str] | None = None,
) -> dict[str, int]:
    """Refuse leakage, missing labels and columns outside the feature spec; return row counts.

    ``X`` is an array (then ``feature_names`` names its columns, default the spec) or a
    DataFrame; ``splits`` maps split name -> boolean row mask or row indices.
    """
    names = list(X.columns) if hasattr(X, "columns") else list(feature_names or FEATURE_NAMES)
    extra = [n for n in names if n not in FEATURE_NAMES]
    absent = [n for n in FEATURE_NAMES if n not in names]
    if extra or absent:
        raise DataCheckError(
            "feature columns differ from models/features.py: "
            + (f"not in the spec: {extra}; " if extra else "")
            + (f"missing: {absent}" if absent else "")
        )
    if names != list(FEATURE_NAMES):
        raise DataCheckError("feature columns are in another order than models/features.py")
    values = np.asarray(X, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(FEATURE_NAMES):
        raise DataCheckError(f"expected a [rows, {len(FEATURE_NAMES)}] matrix, got {values.shape}")
    if np.isinf(values).any():
        cols = sorted({FEATURE_NAMES[j] for j in np.nonzero(np.isinf(values))[1]})
        raise DataCheckError(f"infinite values in {cols} (missing must be NaN, never ±inf)")

    labels = np.asarray(y, dtype=np.float64)
    if len(labels) != len(values):
        raise DataCheckError(f"{len(labels)} labels for {len(values)} rows")
    if np.isnan(labels).any():
        raise DataCheckError(f"{int(np.isnan(labels).sum())} rows have no label")
    unknown = sorted(set(np.unique(labels).tolist()) - {0.0, 1.0})
    if unknown:
        raise DataCheckError(f"labels must be 0 or 1, found {unknown}")

    for col in REQUIRED_META:
        if col not in meta:
            raise DataCheckError(f"metadata column '{col}' is missing")
        if meta[col].isna().any():
            raise DataCheckError(f"metadata column '{col}' has {int(meta[col].isna().sum())} nulls")

    patients = np.asarray(meta["patient"])
    seen: dict[str, set[int]] = {}
    counts: dict[str, int] = {}
    for split, rows in splits.items():
        idx = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        seen[split] = set(patients[idx].tolist())
        counts[split] = len(idx)
        if len(idx) == 0:
            raise DataCheckError(f"split '{split}' is empty")
        if len(np.unique(labels[idx])) < 2:
            raise DataCheckError(f"split '{split}' has only one label class")
    names_ = list(seen)
    for i, a in enumerate(names_):
        for b in names_[i + 1 :]:
            shared = seen[a] & seen[b]
            if shared:
                raise DataCheckError(
                    f"leakage: {len(shared)} patient(s) are in both '{a}' and '{b}' "
                    "(split by patient, never by row)"
                )
    return counts


def split_by_patient(
    meta: Any, seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> dict[str, np.ndarray]:
    """Boolean row masks train/validation/test; patients assigned whole, within each pathway."""
    rng = np.random.default_rng(seed)
    patients = np.asarray(meta["patient"])
    pathways = np.asarray(meta["pathway"])
    assignment: dict[int, str] = {}
    for pw in sorted(set(pathways.tolist())):
        keys = np.unique(patients[pathways == pw])
        keys = keys[rng.permutation(len(keys))]
        n_train = round(fractions[0] * len(keys))
        n_val = round(fractions[1] * len(keys))
        for i, k in enumerate(keys.tolist()):
            assignment[k] = (
                "train" if i < n_train else "validation" if i < n_train + n_val else "test"
            )
    split = np.array([assignment[k] for k in patients.tolist()])
    return {name: split == name for name in ("train", "validation", "test")}
