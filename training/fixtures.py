"""A tiny but complete model artifact for other teams' tests (trains in a few seconds)."""

from __future__ import annotations

from pathlib import Path

from training.artifacts import reference_sample, write_artifact
from training.datachecks import check_training_data, split_by_patient
from training.evaluation import threshold_for_sensitivity
from training.model_fit import (
    StumpConfig,
    check_parity,
    fit_additive,
    onnx_probability,
)
from training.operating_points import choose_operating_points
from training.simulator import simulate_cohort, snapshot_dataset

TINY_CREATED = "2026-01-01T00:00:00+00:00"


def build_tiny_artifact(dest: Path, seed: int = 0, n_patients: int = 60, days: int = 21) -> Path:
    """Simulate, train a small additive model and write model.onnx + manifest + reference.npz.

    Deterministic for the arguments. Trained on synthetic data; for tests only.
    """
    cohort = simulate_cohort(n_patients, days, seed)
    X, y, meta = snapshot_dataset(cohort)
    splits = split_by_patient(meta, seed)
    counts = check_training_data(X, y, meta, splits)
    train, val, test = splits["train"], splits["validation"], splits["test"]
    fitted = fit_additive(
        X[train], y[train], X[val], y[val], seed, StumpConfig(max_iter=60, min_samples_leaf=10)
    )
    onnx_bytes = fitted.model.to_onnx("tiny-test-model")
    parity = check_parity(
        fitted.reference_proba(X[test]),
        onnx_probability(onnx_bytes, X[test]),
        "tiny additive model",
    )
    p_val = fitted.model.predict_proba(X[val])
    alert = threshold_for_sensitivity(p_val, y[val], 0.5)
    high = threshold_for_sensitivity(p_val, y[val], 0.25)
    # Train and validation rows together, so every pathway of a tiny cohort gets its points.
    fit_rows = train | val
    operating_points = choose_operating_points(
        fitted.model.predict_proba(X[fit_rows]), y[fit_rows], meta[fit_rows], seed, 20
    )
    return write_artifact(
        Path(dest),
        fitted.model,
        name="tiny-test-model",
        version=f"tiny-{seed}",
        created=TINY_CREATED,
        metrics={"onnx_max_abs_diff": parity},
        training_data={
            "synthetic": True,
            "seed": seed,
            "n_patients": n_patients,
            "days": days,
            "rows": counts,
        },
        extra={
            "alert_threshold": alert,
            "high_threshold": high,
            "purpose": "tests only",
            "operating_points": operating_points,
            "trained_on": "synthetic data only",
        },
        reference=reference_sample(X[train], fitted.model, y[train], meta[train], 500, seed),
        onnx_bytes=onnx_bytes,
    )
