"""Registry: the promotion gate (pass and fail, with the failed criterion named), promotion
through MLflow aliases, and resolve_champion for the service's reload."""

import json

import mlflow
import numpy as np
import pytest

from models.runtime import OnnxRiskModel
from training.gate import GateMargins, apply_gate, gate_metrics
from training.model_fit import StumpConfig
from training.pipeline import TrainConfig, train_model
from training.registry import RegistryError, promote, resolve_champion

NAME = "home-followup-deterioration"


def _metrics(auroc=0.80, ece=0.01, brier=0.04, copd=0.82, copd_pos=50):
    return {
        "auroc": auroc,
        "ece": ece,
        "brier": brier,
        "slices": {
            "pathway=copd": {"auroc": copd, "positives": copd_pos},
            "sex=female": {"auroc": auroc, "positives": 100},
        },
    }


def test_gate_passes_when_not_worse_beyond_margins():
    decision = apply_gate(_metrics(), _metrics(auroc=0.795, ece=0.015, copd=0.80))
    assert decision.passed and decision.reason.startswith("gate passed")
    assert not decision.failed()


def test_gate_names_the_failed_auroc_criterion():
    decision = apply_gate(_metrics(), _metrics(auroc=0.78))
    assert not decision.passed
    assert [c.name for c in decision.failed()] == ["AUROC"]
    assert "AUROC: challenger 0.7800 < champion 0.8000 − 0.01" in decision.reason


def test_gate_names_a_failed_slice_and_calibration():
    decision = apply_gate(_metrics(), _metrics(copd=0.75, ece=0.06))
    failed = {c.name for c in decision.failed()}
    assert failed == {"slice pathway=copd AUROC", "ECE", "ECE (absolute)"}
    assert "slice pathway=copd AUROC: challenger 0.7500 < champion 0.8200 − 0.03" in (
        decision.reason
    )


def test_gate_skips_slices_with_too_few_positives():
    decision = apply_gate(_metrics(copd_pos=3), _metrics(copd=0.5, copd_pos=3))
    assert decision.passed
    assert all("copd" not in c.name for c in decision.criteria)


def test_gate_metrics_slices():
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.2
    p = np.clip(y * 0.3 + rng.random(400) * 0.5, 0, 1)
    meta = {
        "pathway": np.array(["copd", "oncology"] * 200),
        "age_band": np.array(["65-79"] * 400),
        "sex": np.array(["female"] * 400),
    }
    m = gate_metrics(p, y.astype(int), meta)
    assert set(m["slices"]) == {"pathway=copd", "pathway=oncology", "age_band=65-79", "sex=female"}
    assert 0.5 < m["auroc"] <= 1


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    stump = StumpConfig(max_iter=60, min_samples_leaf=10)
    for seed in (21, 22):
        train_model(
            TrainConfig(
                n_patients=80,
                days=30,
                seed=seed,
                bootstrap=10,
                stump=stump,
                challenger=False,
                reference_rows=200,
            ),
            root / f"art{seed}",
            tracking_uri=uri,
            register=True,
            show_progress=False,
        )
        if seed == 21:
            first = promote(NAME, uri, record_dir=root / "records")
    return uri, root, first


def test_first_version_becomes_champion_and_resolves(registry, tmp_path):
    uri, _, first = registry
    assert first.promoted and first.champion_version is None
    assert "no champion existed" in first.decision.reason
    folder = resolve_champion(uri, NAME, tmp_path / "served")
    model = OnnxRiskModel(folder).load()
    assert model.version == "1"
    assert (folder / "manifest.json").is_file() and (folder / "model_card.md").is_file()


def test_promotion_gate_failure_is_recorded_and_champion_stays(registry):
    uri, root, _ = registry
    strict = GateMargins(auroc=-1.0)  # demands +1.0 AUROC: cannot pass
    result = promote(NAME, uri, margins=strict, record_dir=root / "records")
    assert not result.promoted and result.challenger_version == "2" and result.run_id
    assert "gate failed: AUROC difference" in result.decision.reason
    assert "95 % CI" in result.decision.reason
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    tags = client.get_model_version(NAME, "2").tags
    assert tags["promotion_decision"] == "rejected"
    assert "AUROC" in tags["promotion_reason"]
    record = json.loads(result.record_path.read_text())
    assert record["promoted"] is False and any(not c["passed"] for c in record["criteria"])


def test_a_champion_that_cannot_be_scored_fails_closed(registry, monkeypatch):
    import training.registry as reg

    uri, root, _ = registry
    real = reg._download_artifact

    def champion_gone(client, name, version, dest):
        if dest.name == "champion":
            raise reg.ArtifactError("the champion's artifact folder is gone")
        return real(client, name, version, dest)

    monkeypatch.setattr(reg, "_download_artifact", champion_gone)
    lenient = GateMargins(auroc=1.0, ece=1.0, ece_max=1.0, brier=1.0, slice_auroc=1.0)
    result = promote(NAME, uri, margins=lenient, record_dir=root / "records")
    assert not result.promoted
    assert (
        "failed closed" in result.decision.reason and "cannot be scored" in result.decision.reason
    )
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"


def test_a_version_the_gate_rejected_is_not_served_without_an_override(registry, tmp_path):
    from training.registry import GateRefused

    uri, _, _ = registry
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.set_registered_model_alias(NAME, "champion", "2")  # by hand, past the gate
    try:
        with pytest.raises(GateRefused, match="gate rejected it"):
            resolve_champion(uri, NAME, tmp_path / "served")
        folder = resolve_champion(uri, NAME, tmp_path / "served", "incident 42: roll forward")
        assert OnnxRiskModel(folder).load().version == "2"
        client.delete_model_version_tag(NAME, "2", "promotion_decision")
        with pytest.raises(GateRefused, match="no promotion-gate decision"):
            resolve_champion(uri, NAME, tmp_path / "served2")
    finally:
        client.set_model_version_tag(NAME, "2", "promotion_decision", "rejected")
        client.set_registered_model_alias(NAME, "champion", "1")


def test_paired_differences_are_intervals_over_the_same_patients():
    from training.gate import apply_paired_gate, paired_differences

    rng = np.random.default_rng(3)
    patient = np.repeat(np.arange(300), 10)
    y = (rng.random(3000) < 0.1).astype(int)
    champion = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.1, 3000), 0.001, 0.999)
    same = paired_differences(champion, champion.copy(), y, patient, n_boot=50)
    assert all(d["difference"] == 0 and d["low"] == 0 and d["high"] == 0 for d in same.values())
    noise = np.clip(champion + rng.normal(0, 0.25, 3000), 0.001, 0.999)
    worse = paired_differences(champion, noise, y, patient, n_boot=50)
    assert worse["auroc"]["high"] < 0  # clearly worse, and the interval says so
    m = gate_metrics(
        champion,
        y,
        {"pathway": np.array(["copd"] * 3000)}
        | {"age_band": np.array(["65-79"] * 3000), "sex": np.array(["female"] * 3000)},
    )
    m2 = gate_metrics(
        noise,
        y,
        {"pathway": np.array(["copd"] * 3000)}
        | {"age_band": np.array(["65-79"] * 3000), "sex": np.array(["female"] * 3000)},
    )
    decision = apply_paired_gate(m, m2, worse)
    assert not decision.passed and "AUROC difference" in decision.reason
    assert apply_paired_gate(m, m, same, GateMargins(ece_max=1.0)).passed


def test_promotion_gate_pass_moves_champion(registry, tmp_path):
    uri, root, _ = registry
    lenient = GateMargins(auroc=1.0, ece=1.0, ece_max=1.0, brier=1.0, slice_auroc=1.0)
    result = promote(NAME, uri, margins=lenient, record_dir=root / "records")
    assert result.promoted and result.champion_version == "1"
    assert result.decision.criteria  # compared on the challenger's hold-out
    folder = resolve_champion(uri, NAME, tmp_path / "served")
    assert OnnxRiskModel(folder).load().version == "2"
    with pytest.raises(RegistryError, match="no version with alias 'challenger'"):
        promote(NAME, uri, record_dir=root / "records")


def test_resolve_champion_without_one_fails_clearly(tmp_path):
    with pytest.raises(RegistryError, match="no version with alias 'champion'"):
        resolve_champion(f"sqlite:///{tmp_path / 'empty.db'}", "nothing-here", tmp_path / "x")


def test_evaluate_command_resolves_a_registry_alias(registry, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from training.cli import app

    uri, _, _ = registry
    monkeypatch.setenv("TRIAGE_VAR_DIR", str(tmp_path / "var"))
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            f"models:/{NAME}@champion",
            "--tracking-uri",
            uri,
            "--n-patients",
            "40",
            "--days",
            "21",
            "--bootstrap",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "synthetic cohort seed 4242: AUROC" in result.output
    runs = mlflow.search_runs(experiment_names=[f"{NAME}-evaluation"])
    assert len(runs) == 1 and "metrics.test_auroc" in runs.columns
