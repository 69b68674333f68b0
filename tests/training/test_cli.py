"""The lifecycle commands as the service's `triage` CLI mounts them."""

import json

from typer.testing import CliRunner

from models.runtime import OnnxRiskModel
from training.cli import app

runner = CliRunner()


def test_commands_are_registered():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("simulate", "train", "evaluate", "promote"):
        assert command in result.output


def test_simulate_writes_fhir_bundles(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_VAR_DIR", str(tmp_path / "var"))
    result = runner.invoke(
        app,
        [
            "simulate",
            "--n-patients",
            "5",
            "--days",
            "7",
            "--seed",
            "3",
            "--out",
            str(tmp_path / "sim"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "sim" / "bundles.ndjson").read_text().splitlines()
    assert lines and json.loads(lines[0])["type"] == "batch"
    assert list((tmp_path / "var" / "results").glob("simulate-*.json"))
    # Identifiers go to the patients file for enrolment, never to the terminal.
    patients = json.loads((tmp_path / "sim" / "patients.json").read_text())
    assert all(p["identifier"] not in result.output for p in patients)


def test_train_without_tracking_then_evaluate(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_VAR_DIR", str(tmp_path / "var"))
    out = tmp_path / "model"
    result = runner.invoke(
        app,
        [
            "train",
            "--n-patients",
            "60",
            "--days",
            "21",
            "--seed",
            "4",
            "--no-track",
            "--bootstrap",
            "10",
            "--no-governance",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "synthetic hold-out: AUROC" in result.output
    assert OnnxRiskModel(out).load().ready
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(out),
            "--n-patients",
            "40",
            "--days",
            "21",
            "--no-track",
            "--bootstrap",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = sorted((tmp_path / "var" / "results").glob("evaluate-*.json"))
    assert json.loads(saved[-1].read_text())["evaluation"]["baselines"]["NEWS2 ≥ 5"]


def test_promote_without_a_challenger_exits_with_a_message(tmp_path):
    result = runner.invoke(
        app, ["promote", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    )
    assert result.exit_code == 2
    assert "no version with alias 'challenger'" in result.output
