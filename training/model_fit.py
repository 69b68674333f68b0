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
    model: StepFunctionModel  # shape-constrained, calibrated and centred
    shape_changes: dict[str, float]  # feature -> largest change the shape projection made

    def reference_proba(self, X: np.ndarray) -> np.ndarray:
        """The served model in numpy (float64): the reference ONNX is checked against.

        scikit-learn's own prediction is checked against the unconstrained step functions in
        :func:`fit_additive`, so conversion and export are both verified.
        """
        return self.model.predict_proba(as_float32_exact(X))


def _isotonic_increasing(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for v, w in zip(values, weights, strict=True):
        blocks.append([float(v), float(w), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(int(n), m) for m, _, n in blocks])


def constrain_shapes(
    model: StepFunctionModel, X_train: np.ndarray
) -> tuple[StepFunctionModel, dict[str, float]]:
    """Project each shape onto what physiology allows (FeatureDef.never_falls_above).

    Above the feature's value the step function may only rise (a weighted isotonic fit over the
    bins there, weighted by how many training rows fall in each bin). Global directions are
    already enforced while fitting (monotonic constraints); missing data is handled after
    centring (:func:`missing_never_lowers`).
    """
    values = [v.copy() for v in model.values]
    changes: dict[str, float] = {}
    bins = model.bins(X_train)
    for j, f in enumerate(FEATURES):
        start_value = f.never_falls_above
        if start_value is None or len(model.thresholds[j]) == 0:
            continue
        first = int(np.searchsorted(model.thresholds[j], start_value, side="left"))
        present = ~np.isnan(X_train[:, j])
        counts = np.bincount(bins[present, j], minlength=len(values[j])).astype(float)
        segment = values[j][first:]
        fitted = _isotonic_increasing(segment, counts[first:] + 1e-6)
        changes[f.name] = float(np.max(np.abs(fitted - segment), initial=0.0))
        values[j][first:] = fitted
    return (
        StepFunctionModel(
            model.feature_names,
            [t.copy() for t in model.thresholds],
            values,
            model.missing_values.copy(),
            model.intercept,
        ),
        changes,
    )


def missing_never_lowers(model: StepFunctionModel) -> StepFunctionModel:
    """A missing value adds at least nothing: never below the typical patient of the pathway.

    Applied to the centred model, where a contribution of 0 is the training population's
    average for that feature; a model that learned "no heart rate for days" as reassuring
    would otherwise say so to a nurse.
    """
    return StepFunctionModel(
        model.feature_names,
        [t.copy() for t in model.thresholds],
        [v.copy() for v in model.values],
        np.maximum(model.missing_values, 0.0),
        model.intercept,
    )


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
    X_train32 = as_float32_exact(X_train)
    estimator.fit(X_train32, y_train)
    raw = stumps_to_step_function(estimator)
    check_parity(
        1.0 / (1.0 + np.exp(-estimator.decision_function(as_float32_exact(X_val)))),
        raw.predict_proba(as_float32_exact(X_val)),
        "stumps converted to step functions",
    )
    shaped, changes = constrain_shapes(raw, X_train32)
    scale, shift = platt_fit(shaped.logit(as_float32_exact(X_val)), y_val.astype(np.float64))
    model = missing_never_lowers(shaped.affine(scale, shift).centred(X_train32))
    # Platt again after the missing-value floor, so the served probabilities stay calibrated.
    scale2, shift2 = platt_fit(model.logit(as_float32_exact(X_val)), y_val.astype(np.float64))
    if scale2 > 0:
        model = missing_never_lowers(model.affine(scale2, shift2))
    return FittedAdditive(estimator, scale, shift, model, changes)


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
