"""Per-pathway recalibration carried in a manifest, applied to the model's output.

A site's outcomes (POST /api/v1/outcomes) can show that the shipped probabilities run high or
low there. ``triage recalibrate`` fits, per pathway, an affine map of the logit (an intercept
shift, or Platt scaling: σ(a·logit + b)) and writes it into a new model version's manifest under
``recalibration``. The map keeps the model additive: every contribution is scaled by ``a`` and
the pathway's intercept becomes ``a·intercept + b``, so the explanation still sums exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from models.runtime import Prediction


def pathway_maps(manifest_extra: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """pathway -> (scale, shift) from a manifest ({} when the version is not recalibrated)."""
    block = manifest_extra.get("recalibration") or {}
    return {
        pw: (float(v.get("scale", 1.0)), float(v.get("shift", 0.0)))
        for pw, v in (block.get("pathways") or {}).items()
    }


def recalibrate(
    prediction: Prediction, manifest_extra: Mapping[str, Any], pathways: Sequence[str]
) -> Prediction:
    """The prediction with each row's pathway map applied (unchanged without one)."""
    maps = pathway_maps(manifest_extra)
    if not maps:
        return prediction
    scale = np.array([maps.get(p, (1.0, 0.0))[0] for p in pathways], dtype=np.float64)
    shift = np.array([maps.get(p, (1.0, 0.0))[1] for p in pathways], dtype=np.float64)
    logit = scale * np.asarray(prediction.logit, dtype=np.float64) + shift
    intercepts = scale * prediction.intercept + shift
    return replace(
        prediction,
        probability=1.0 / (1.0 + np.exp(-logit)),
        logit=logit,
        contributions=np.asarray(prediction.contributions, dtype=np.float64) * scale[:, None],
        row_intercepts=intercepts,
    )
