"""Training on a small cohort: stump conversion, ONNX parity, MLflow logging, model card."""

import json

import mlflow
import numpy as np
import pytest

from models.artifact import Manifest
from models.features import FEATURE_NAMES, N_FEATURES
from models.runtime import OnnxRiskModel
from training.model_fit import (
    ParityError,
    StumpConfig,
    check_parity,
    platt_fit,
    stumps_to_step_function,
)
from training.pipeline import TrainConfig, train_model

TINY = StumpConfig(max_iter=60, min_samples_leaf=10)


def test_stumps_convert_exactly_including_ties_and_missing():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = np.round(rng.normal(size=(3000, N_FEATURES)), 1)
    X[rng.random(X.shape) < 0.2] = np.nan
    y = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 5]) + rng.normal(size=3000) > 0.5
    est = HistGradientBoostingClassifier(max_depth=1, max_iter=80, random_state=0).fit(X, y)
    step = stumps_to_step_function(est)
    probe = np.vstack([X[:500], np.full((1, N_FEATURES), np.nan)])
    # Values exactly on split thresholds go left in scikit-learn and to the lower bin here.
    thr = next(t for t in step.thresholds if len(t))
    j = next(i for i, t in enumerate(step.thresholds) if len(t))
    on_edge = np.zeros((len(thr), N_FEATURES))
    on_edge[:, j] = thr
    probe = np.vstack([probe, on_edge])
    np.testing.assert_allclose(step.logit(probe), est.decision_function(probe), atol=1e-12)


def test_platt_recovers_a_known_affine_map():
    rng = np.random.default_rng(1)
    logit = rng.normal(size=20000) * 2
    y = (rng.random(20000) < 1 / (1 + np.exp(-(0.5 * logit - 1.0)))).astype(float)
    a, b = platt_fit(logit, y)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.07)


def test_parity_failure_stops_the_run():
    with pytest.raises(ParityError, match=r"differs from scikit-learn by 0\.001"):
        check_parity(np.array([0.1, 0.2]), np.array([0.1, 0.201]), "additive model")
    assert check_parity(np.array([0.1]), np.array([0.1 + 1e-7]), "ok") < 1e-5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    outcome = train_model(
        TrainConfig(n_patients=80, days=30, seed=2, bootstrap=20, stump=TINY, reference_rows=300),
        root / "artifact",
        tracking_uri=uri,
        register=True,
        governance_dir=root / "gov",
        show_progress=False,
    )
    return outcome, uri, root


def test_small_training_run_writes_a_servable_artifact(trained):
    outcome, _, _ = trained
    model = OnnxRiskModel(outcome.artifact_dir).load()
    manifest = Manifest.read(outcome.artifact_dir)
    assert manifest.version == outcome.registered_version == "1"
    assert manifest.training_data["synthetic"] is True
    assert manifest.metrics["onnx_max_abs_diff"] <= 1e-5
    assert 0 < manifest.extra["alert_threshold"] < 1
    reference = np.load(outcome.artifact_dir / "reference.npz")
    assert reference["features"].shape == (300, N_FEATURES)
    assert list(reference["feature_names"]) == list(FEATURE_NAMES)
    pred = model.predict(reference["features"])
    np.testing.assert_allclose(pred.probability, reference["probability"], atol=1e-6)
    ev = outcome.evaluation
    assert set(ev["baselines"]) >= {
        "NEWS2 ≥ 5",
        "Weight gain > 2 kg in 3 days",
        "SpO2 < 92 %",
        "Temperature ≥ 38.0 °C",
    }
    assert "pathway=paediatric" in ev["model"]["slices"]
    assert "sex=female" in ev["model"]["slices"] and "age_band=80+" in ev["model"]["slices"]
    lo, hi = ev["model"]["overall"]["auroc_ci"]
    assert lo <= ev["model"]["overall"]["auroc"] <= hi


def test_run_is_tracked_and_registered_with_signature(trained):
    outcome, uri, _ = trained
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(outcome.run_id)
    assert len(run.data.params["dataset_sha256"]) == 64
    assert int(run.data.params["dataset_rows"]) > 0
    assert "mlflow.source.git.commit" in run.data.tags
    assert {"test_auroc", "test_ece", "test_brier", "onnx_max_abs_diff"} <= set(run.data.metrics)
    names = {a.path for a in client.list_artifacts(outcome.run_id, "plots")}
    assert names == {
        "plots/reliability.png",
        "plots/roc_pr.png",
        "plots/operating_points.png",
        "plots/shapes.png",
    }
    # Named after what it did; rule metrics named after their rule; evaluate ran on the model.
    assert run.info.run_name == "train: 80 synthetic patients x 30 d, seed 2"
    assert {"rule_news2_ge_5_auroc", "rule_weight_gain_gt_2_kg_in_3_days_auroc"} <= set(
        run.data.metrics
    )
    assert {"recall_score", "precision_score", "true_positives"} <= set(run.data.metrics)
    lineage = {i.dataset.name for i in run.inputs.dataset_inputs}
    assert lineage >= {f"synthetic-cohort-seed2-{c}" for c in ("train", "validation", "test")}
    version = client.get_model_version_by_alias("home-followup-deterioration", "challenger")
    assert str(version.version) == "1" and version.tags["synthetic_data"] == "true"
    info = mlflow.models.get_model_info("models:/home-followup-deterioration/1")
    assert "onnx" in info.flavors
    assert info.signature.inputs.input_names() == list(FEATURE_NAMES)
    assert info.saved_input_example_info is not None
    described = client.get_model_version("home-followup-deterioration", "1").description
    assert "synthetic patients" in described and "AUROC" in described and "[" in described


def test_model_card_has_every_section_and_is_in_governance(trained):
    outcome, _, root = trained
    card = (outcome.artifact_dir / "model_card.md").read_text(encoding="utf-8")
    for heading in (
        "## Intended use and users",
        "## Out of scope",
        "## Training data",
        "## Features",
        "## Performance (synthetic hold-out)",
        "### Per slice",
        "## Known failure modes",
        "validated on local data",
    ):
        assert heading in card
    assert "NEWS2 ≥ 5" in card and "reliability.png" in card
    gov = root / "gov" / "home-followup-deterioration-1"
    assert (gov / "model_card.md").read_text(encoding="utf-8") == card
    assert (gov / "reliability.png").stat().st_size > 1000
    assert "home-followup-deterioration-1" in (root / "gov" / "README.md").read_text()
    json.dumps(outcome.evaluation, default=float)  # the results JSON is serialisable


def test_shipped_build_is_bit_for_bit_reproducible(tmp_path):
    config = TrainConfig(
        n_patients=60,
        days=25,
        seed=5,
        bootstrap=10,
        stump=TINY,
        challenger=False,
        reference_rows=200,
    )
    folders = [
        train_model(
            config, tmp_path / name, shipped=True, track=False, show_progress=False
        ).artifact_dir
        for name in ("a", "b")
    ]
    for name in ("model.onnx", "manifest.json", "reference.npz", "model_card.md"):
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name
    manifest = Manifest.read(folders[0])
    assert manifest.version == "shipped-seed5"
    assert manifest.created == "2026-01-05T00:00:00+00:00"  # fixed: the cohort's start date
