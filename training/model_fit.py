"""Fitting the served model family: boosted stumps -> exact additive step functions.

``HistGradientBoostingClassifier(max_depth=1)`` grows one split per tree, so the ensemble is a
sum of per-feature step functions: an additive model whose contributions are exact. Monotonic
constraints come from ``FeatureDef.risk_direction`` (a falling SpO2 may never lower the risk).
Platt calibration (an affine map of the logit) keeps the model additive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.additive import StepFunctionModel
from models.features import FEATURE_NAMES, FEATURES


@dataclass(frozen=True)
class StumpConfig:
    """Hyper-parameters of the boosted-stump model (logged to MLflow as params)."""

    max_iter: int = 400
    learning_rate: float = 0.08
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    max_bins: int = 255

    def as_params(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass
class FittedAdditive:
    """The fitted estimator, its Platt map and the served step-function model."""

    estimator: object  # HistGradientBoostingClassifier
    platt_scale: float
    platt_shift: float
    model: StepFunctionModel  # calibrated and centred

    def reference_proba(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's own prediction, calibrated: the reference ONNX is checked against."""
        raw = self.estimator.decision_function(as_float32_exact(X))  # type: ignore[attr-defined]
        return 1.0 / (1.0 + np.exp(-(self.platt_scale * raw + self.platt_shift)))


def as_float32_exact(X: np.ndarray) -> np.ndarray:
    """Round features to float32 (what ONNX receives), so split decisions agree exactly."""
    return np.asarray(X, dtype=np.float32).astype(np.float64)


def monotonic_constraints() -> list[int]:
    """One constraint per feature, from the single feature definition (FeatureDef.risk_direction)."""
    return [f.risk_direction for f in FEATURES]


def stumps_to_step_function(estimator: object) -> StepFunctionModel:
    """Convert a fitted depth-1 HistGradientBoostingClassifier into a StepFunctionModel.

    scikit-learn sends x <= threshold left and NaN to the side ``missing_go_to_left`` says; the
    step model puts a value equal to a threshold in the lower bin, so the two agree exactly.
    """
    predictors = estimator._predictors  # type: ignore[attr-defined]
    intercept = float(np.ravel(estimator._baseline_prediction)[0])  # type: ignore[attr-defined]
    n_features = len(FEATURE_NAMES)
    splits: list[list[tuple[float, float, float, bool]]] = [[] for _ in range(n_features)]
    for trees in predictors:
        nodes = trees[0].nodes
        root = nodes[0]
        if root["is_leaf"]:
            intercept += float(root["value"])
            continue
        if root["is_categorical"]:
            raise ValueError("categorical splits cannot be converted to step functions")
        left, right = nodes[root["left"]], nodes[root["right"]]
        if not (left["is_leaf"] and right["is_leaf"]):
            raise ValueError("only depth-1 trees (stumps) convert to an additive model")
        splits[int(root["feature_idx"])].append(
            (
                float(root["num_threshold"]),
                float(left["value"]),
                float(right["value"]),
                bool(root["missing_go_to_left"]),
            )
        )
    thresholds: list[np.ndarray] = []
    values: list[np.ndarray] = []
    missing = np.zeros(n_features)
    for j, stumps in enumerate(splits):
        thr = np.unique(np.array([s[0] for s in stumps], dtype=np.float64))
        bins = np.zeros(len(thr) + 1)
        for tau, lv, rv, miss_left in stumps:
            # Bin b covers (thr[b-1], thr[b]]; a stump sends it left iff tau >= thr[b].
            goes_left = np.append(tau >= thr, False)
            bins += np.where(goes_left, lv, rv)
            missing[j] += lv if miss_left else rv
        thresholds.append(thr)
        values.append(bins)
    return StepFunctionModel(tuple(FEATURE_NAMES), thresholds, values, missing, intercept)


def platt_fit(logit: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Scale and shift of σ(a·logit + b) by Newton's method on the log-loss (deterministic)."""
    a, b = 1.0, 0.0
    Z = np.column_stack([logit, np.ones_like(logit)])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a * logit + b)))
        grad = Z.T @ (p - y)
        w = np.maximum(p * (1 - p), 1e-12)
        hess = Z.T @ (Z * w[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-12:
            break
    return float(a), float(b)


def fit_additive(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    seed: int,
    config: StumpConfig | None = None,
) -> FittedAdditive:
    """Boosted stumps on train, Platt on validation, centred on train."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    config = config or StumpConfig()
    estimator = HistGradientBoostingClassifier(
        max_depth=1,
        max_iter=config.max_iter,
        learning_rate=config.learning_rate,
        min_samples_leaf=config.min_samples_leaf,
        l2_regularization=config.l2_regularization,
        max_bins=config.max_bins,
        monotonic_cst=monotonic_constraints(),
        early_stopping=False,
        random_state=seed,
    )
    estimator.fit(as_float32_exact(X_train), y_train)
    raw = stumps_to_step_function(estimator)
    scale, shift = platt_fit(raw.logit(as_float32_exact(X_val)), y_val.astype(np.float64))
    model = raw.affine(scale, shift).centred(as_float32_exact(X_train))
    return FittedAdditive(estimator, scale, shift, model)


def fit_tree_challenger(X_train: np.ndarray, y_train: np.ndarray, seed: int) -> object:
    """A deeper tree ensemble for comparison (not servable: no exact contributions)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_depth=3,
        max_iter=250,
        learning_rate=0.08,
        min_samples_leaf=40,
        l2_regularization=1.0,
        monotonic_cst=monotonic_constraints(),
        early_stopping=False,
        random_state=seed,
    ).fit(as_float32_exact(X_train), y_train)


def tree_to_onnx(estimator: object) -> bytes:
    """The challenger as ONNX via skl2onnx (numeric features only: see docs/architecture.md §5)."""
    import warnings

    from skl2onnx import to_onnx

    with warnings.catch_warnings():
        # skl2onnx 1.20 passes booleans where onnx expects ints (onnx warns, result is right).
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="onnx")
        onx = to_onnx(
            estimator,
            np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32),
            options={id(estimator): {"zipmap": False}},
            target_opset=17,
        )
    return bytes(onx.SerializeToString(deterministic=True))


class ParityError(RuntimeError):
    """The ONNX export does not reproduce scikit-learn's predictions."""


PARITY_TOLERANCE = 1e-5


def onnx_probability(onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    """P(deterioration) from an ONNX graph: our additive graph or a skl2onnx classifier."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    wanted = "probability" if "probability" in outputs else "probabilities"
    (out,) = session.run([wanted], {name: np.asarray(X, dtype=np.float32)})
    out = np.asarray(out, dtype=np.float64)
    return out[:, 1] if out.ndim == 2 else out


def check_parity(
    reference: np.ndarray, onnx_prob: np.ndarray, what: str, tolerance: float = PARITY_TOLERANCE
) -> float:
    """Max abs difference in probability; raises ParityError above the tolerance."""
    diff = float(np.max(np.abs(np.asarray(reference) - np.asarray(onnx_prob)), initial=0.0))
    if not diff <= tolerance:
        worst = int(np.argmax(np.abs(np.asarray(reference) - np.asarray(onnx_prob))))
        raise ParityError(
            f"{what}: ONNX differs from scikit-learn by {diff:.3g} in probability on hold-out "
            f"row {worst} (allowed {tolerance:g}); the export is wrong, the run is stopped"
        )
    return diff
