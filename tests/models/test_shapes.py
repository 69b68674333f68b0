"""Shape functions a clinician can believe: every feature's shape, walked over its range through
the ONNX graph, keeps its physiological direction; missing data never lowers the risk.

Checked on the shipped artifact and on a model freshly trained by training/ (tiny).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.artifact import REFERENCE_FILE, SHIPPED_ARTIFACT_DIR
from models.features import FEATURES, N_FEATURES
from models.runtime import OnnxRiskModel


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.fixtures import build_tiny_artifact

    return build_tiny_artifact(tmp_path_factory.mktemp("tiny-shapes"), seed=3)


def _grid(folder: Path, j: int) -> np.ndarray:
    """The feature's range: the reference sample's values widened well past both ends."""
    with np.load(folder / REFERENCE_FILE, allow_pickle=False) as ref:
        values = ref["features"][:, j]
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (-10.0, 10.0)
    pad = max(hi - lo, 1.0)
    return np.unique(np.r_[np.linspace(lo - pad, hi + pad, 400), values])


def _shape(model: OnnxRiskModel, j: int, xs: np.ndarray) -> np.ndarray:
    X = np.full((len(xs), N_FEATURES), np.nan, dtype=np.float32)
    X[:, j] = xs
    return np.asarray(model.predict(X).contributions[:, j], dtype=np.float64)


@pytest.mark.parametrize("which", ["shipped", "trained"])
def test_every_shape_keeps_its_direction_over_its_range(which: str, tiny_dir: Path) -> None:
    folder = SHIPPED_ARTIFACT_DIR if which == "shipped" else tiny_dir
    model = OnnxRiskModel(folder).load()
    checked = 0
    for j, f in enumerate(FEATURES):
        xs = _grid(folder, j).astype(np.float32).astype(np.float64)
        ys = _shape(model, j, xs)
        steps = np.diff(ys)
        if f.risk_direction == 1:
            assert steps.min() >= -1e-9, f"{f.name}: a rise lowers the risk somewhere"
        elif f.risk_direction == -1:
            assert steps.max() <= 1e-9, f"{f.name}: a fall lowers the risk somewhere"
        if f.never_falls_above is not None:
            above = xs >= f.never_falls_above
            rising = np.diff(ys[above])
            assert rising.min(initial=0) >= -1e-9, (
                f"{f.name}: above {f.never_falls_above} a rise lowers the risk"
            )
        checked += 1
    assert checked == N_FEATURES


@pytest.mark.parametrize("which", ["shipped", "trained"])
def test_missing_data_never_lowers_the_risk_below_the_typical_patient(
    which: str, tiny_dir: Path
) -> None:
    folder = SHIPPED_ARTIFACT_DIR if which == "shipped" else tiny_dir
    model = OnnxRiskModel(folder).load()
    nothing = np.full((1, N_FEATURES), np.nan, dtype=np.float32)
    contributions = model.predict(nothing).contributions[0]
    lowered = [f.name for f, c in zip(FEATURES, contributions, strict=True) if c < -1e-12]
    assert not lowered, f"missing values that read as reassuring: {lowered}"


def test_fever_that_rises_never_reads_as_lowering_the_risk() -> None:
    """The nurse's case: 38.4 °C must not lower the risk where 37.4 °C raised it."""
    model = OnnxRiskModel(SHIPPED_ARTIFACT_DIR).load()
    j = next(i for i, f in enumerate(FEATURES) if f.name == "temperature_c_latest")
    at_37_4, at_38_4, at_39_5 = _shape(model, j, np.array([37.4, 38.4, 39.5]))
    assert at_37_4 <= at_38_4 <= at_39_5
