"""Additive step-function risk model and its ONNX graph.

logit(x) = intercept + Σ_f table_f[bin_f(x_f)], probability = σ(logit).

Each feature has sorted thresholds; ``bin_f(x) = #{thresholds < x}`` (so a value equal to a
threshold falls in the lower bin, as in scikit-learn's trees), and NaN has a bin of its own.
Because the model is a sum, the contribution of each feature is exactly its table entry: the
explanation is the model, not an approximation of it. Boosted stumps, binned logistic
regression and Platt calibration on top of either all reduce to this form.

The ONNX graph computes in float64 from a float32 input, so onnxruntime and numpy agree to
rounding, and emits ``probability``, ``logit`` and ``contributions`` [N, F].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_NAME = "features"
OUTPUT_NAMES = ("probability", "logit", "contributions")
ONNX_OPSET = 17


@dataclass
class StepFunctionModel:
    """Per-feature step functions plus an intercept; float64 throughout."""

    feature_names: tuple[str, ...]
    thresholds: list[np.ndarray]  # per feature, sorted ascending
    values: list[np.ndarray]  # per feature, len(thresholds)+1 bin values
    missing_values: np.ndarray  # per feature, value for NaN
    intercept: float

    def bins(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        out = np.empty(X.shape, dtype=np.int64)
        for j, thr in enumerate(self.thresholds):
            out[:, j] = np.searchsorted(thr, X[:, j], side="left")
        return out

    def contributions(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        contrib = np.empty(X.shape, dtype=np.float64)
        bins = self.bins(X)
        for j, vals in enumerate(self.values):
            contrib[:, j] = np.where(
                np.isnan(X[:, j]),
                self.missing_values[j],
                vals[np.minimum(bins[:, j], len(vals) - 1)],
            )
        return contrib

    def logit(self, X: np.ndarray) -> np.ndarray:
        logit: np.ndarray = self.intercept + self.contributions(X).sum(axis=1)
        return logit

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        probability: np.ndarray = 1.0 / (1.0 + np.exp(-self.logit(X)))
        return probability

    def centred(self, X_reference: np.ndarray) -> StepFunctionModel:
        """Same function, with each feature's mean contribution on X_reference moved into the
        intercept, so a contribution reads as "compared with a typical patient"."""
        means = self.contributions(X_reference).mean(axis=0)
        return StepFunctionModel(
            self.feature_names,
            [t.copy() for t in self.thresholds],
            [v - m for v, m in zip(self.values, means, strict=True)],
            self.missing_values - means,
            float(self.intercept + means.sum()),
        )

    def affine(self, scale: float, shift: float) -> StepFunctionModel:
        """σ(scale·logit + shift): Platt calibration stays additive."""
        return StepFunctionModel(
            self.feature_names,
            [t.copy() for t in self.thresholds],
            [v * scale for v in self.values],
            self.missing_values * scale,
            float(self.intercept * scale + shift),
        )

    def to_onnx(self, model_name: str = "risk") -> bytes:
        """Serialise as an ONNX graph (deterministic bytes for the same model)."""
        from onnx import TensorProto, helper, numpy_helper

        n_features = len(self.feature_names)
        width = max((len(t) for t in self.thresholds), default=0) or 1
        edges = np.full((n_features, width), np.inf)
        for j, thr in enumerate(self.thresholds):
            edges[j, : len(thr)] = thr
        n_slots = width + 2  # bins 0..width, then the missing slot
        table = np.zeros((n_features, n_slots))
        for j, vals in enumerate(self.values):
            table[j, : len(vals)] = vals
            table[j, len(vals) : width + 1] = vals[-1]  # padding edges are +inf: never reached
            table[j, width + 1] = self.missing_values[j]

        def const(name: str, array: np.ndarray) -> TensorProto:
            return numpy_helper.from_array(np.ascontiguousarray(array), name=name)

        inits = [
            const("edges", edges[None, :, :]),
            const("table_flat", table.ravel()),
            const("slot_offsets", (np.arange(n_features, dtype=np.int64) * n_slots)[None, :]),
            const("missing_slot", np.array(width + 1, dtype=np.int64)),
            const("axis_last", np.array([2], dtype=np.int64)),
            const("axis_features", np.array([1], dtype=np.int64)),
            const("unsqueeze_axis", np.array([2], dtype=np.int64)),
            const("intercept", np.array([self.intercept])),
        ]
        nodes = [
            helper.make_node("Cast", [INPUT_NAME], ["x64"], to=TensorProto.DOUBLE),
            helper.make_node("Unsqueeze", ["x64", "unsqueeze_axis"], ["x3"]),
            helper.make_node("Greater", ["x3", "edges"], ["above"]),
            helper.make_node("Cast", ["above"], ["above_i"], to=TensorProto.INT64),
            helper.make_node("ReduceSum", ["above_i", "axis_last"], ["bin"], keepdims=0),
            helper.make_node("IsNaN", ["x64"], ["is_missing"]),
            helper.make_node("Where", ["is_missing", "missing_slot", "bin"], ["slot"]),
            helper.make_node("Add", ["slot", "slot_offsets"], ["flat_index"]),
            helper.make_node("Gather", ["table_flat", "flat_index"], ["contributions"], axis=0),
            helper.make_node(
                "ReduceSum", ["contributions", "axis_features"], ["sum_contrib"], keepdims=0
            ),
            helper.make_node("Add", ["sum_contrib", "intercept"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["probability"]),
        ]
        graph = helper.make_graph(
            nodes,
            model_name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", n_features])],
            [
                helper.make_tensor_value_info("probability", TensorProto.DOUBLE, ["N"]),
                helper.make_tensor_value_info("logit", TensorProto.DOUBLE, ["N"]),
                helper.make_tensor_value_info(
                    "contributions", TensorProto.DOUBLE, ["N", n_features]
                ),
            ],
            initializer=inits,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
            producer_name="home-followup-triage",
            doc_string="Additive step-function risk model; contributions are exact.",
        )
        model.ir_version = 8
        return bytes(model.SerializeToString(deterministic=True))
