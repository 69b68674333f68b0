"""Model lifecycle commands: simulate, train, evaluate, promote (mounted by `triage`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Model lifecycle: simulate, train, evaluate, promote (synthetic data).",
    no_args_is_help=True,
)

NameOpt = Annotated[str, typer.Option(help="Registered model name.")]
UriOpt = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///<var>/mlflow.db)."
    ),
]


def _write_results(kind: str, payload: dict[str, Any]) -> Path:
    from training.tracking import var_dir

    folder = var_dir() / "results"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{kind}-{stamp}.json"
    path.write_text(
        json.dumps(payload, indent=2, default=float, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return path


@app.command()
def simulate(
    n_patients: Annotated[int, typer.Option(help="Patients (pathways round-robin).")] = 200,
    days: Annotated[int, typer.Option(help="Days of home follow-up.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same cohort).")] = 1,
    out: Annotated[Path | None, typer.Option(help="Folder for the FHIR NDJSON bundles.")] = None,
    batch_size: Annotated[int, typer.Option(help="Resources per FHIR batch Bundle.")] = 100,
) -> None:
    """Simulate a synthetic cohort and write it as FHIR batch Bundles (one per NDJSON line)."""
    from training.simulator import cohort_to_fhir, fhir_bundles, simulate_cohort
    from training.tracking import var_dir

    cohort = simulate_cohort(n_patients, days, seed)
    folder = out or var_dir() / "simulated" / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)

    def reference(p: Any) -> dict[str, Any]:
        return {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": p.identifier}}

    n_bundles = 0
    with (folder / "bundles.ndjson").open("w", encoding="utf-8") as fh:
        for bundle in fhir_bundles(cohort_to_fhir(cohort, reference), batch_size):
            fh.write(json.dumps(bundle, ensure_ascii=False) + "\n")
            n_bundles += 1
    patients = [
        {
            "key": p.key,
            "identifier": p.identifier,
            "birth_date": p.birth_date.isoformat(),
            "sex": p.sex,
            "pathway": p.pathway,
            "events": [e.isoformat() for e in p.events],
        }
        for p in cohort.patients
    ]
    (folder / "patients.json").write_text(json.dumps(patients, indent=1), encoding="utf-8")
    summary = {
        "seed": seed,
        "n_patients": n_patients,
        "days": days,
        "bundles": n_bundles,
        "readings": len(cohort.readings),
        "questionnaires": len(cohort.questionnaire_answers),
        "events": sum(len(p.events) for p in cohort.patients),
        "folder": str(folder),
        "synthetic": True,
    }
    results = _write_results("simulate", summary)
    typer.echo(
        f"{n_bundles} bundles in {folder} (synthetic patients; ids are synthetic "
        f"fødselsnummer, month+80); results {results}"
    )


@app.command()
def train(
    shipped: Annotated[
        bool,
        typer.Option(
            "--shipped",
            help="Rebuild the shipped default artifact (fixed seed, full size, "
            "models/artifacts/default, deterministic bytes).",
        ),
    ] = False,
    n_patients: Annotated[int | None, typer.Option(help="Patients to simulate.")] = None,
    days: Annotated[int | None, typer.Option(help="Days of follow-up.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (shipped: 20261125).")] = None,
    name: NameOpt = "home-followup-deterioration",
    out: Annotated[Path | None, typer.Option(help="Artifact folder to write.")] = None,
    register: Annotated[
        bool | None,
        typer.Option(
            help="Register in the MLflow registry with alias 'challenger' (default: yes, except "
            "for --shipped)."
        ),
    ] = None,
    track: Annotated[bool, typer.Option(help="Log the run to MLflow.")] = True,
    tracking_uri: UriOpt = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for CIs.")] = 200,
    challenger: Annotated[
        bool,
        typer.Option(
            help="Also fit the tree-ensemble comparison model (about a fifth of the time)."
        ),
    ] = True,
    governance: Annotated[
        bool, typer.Option(help="Also write the model card to governance/model-cards/.")
    ] = True,
) -> None:
    """Train the additive model (+ tree challenger), evaluate against rules, write artifact."""
    from training.pipeline import SHIPPED_SEED, TrainConfig, format_interval, train_model
    from training.tracking import PROJECT_ROOT, var_dir

    defaults = TrainConfig()
    config = TrainConfig(
        seed=SHIPPED_SEED if shipped else (seed if seed is not None else defaults.seed),
        n_patients=n_patients or defaults.n_patients,
        days=days or defaults.days,
        name=name,
        bootstrap=bootstrap,
        challenger=challenger,
    )
    if shipped and (
        seed not in (None, SHIPPED_SEED)
        or n_patients
        or days
        or not challenger
        or bootstrap != defaults.bootstrap
    ):
        raise typer.BadParameter(
            "--shipped fixes seed, size, days, bootstrap and the "
            "challenger (its model card shows them); drop the options"
        )
    do_register = (not shipped) if register is None else register
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    artifact_dir = out or (None if shipped else var_dir() / "artifacts" / f"{name}-{stamp}")
    outcome = train_model(
        config,
        artifact_dir,
        shipped=shipped,
        track=track,
        tracking_uri=tracking_uri,
        register=do_register and track,
        governance_dir=PROJECT_ROOT / "governance" / "model-cards" if governance else None,
    )
    t = outcome.evaluation["targets"]
    overall = outcome.evaluation["model"]["overall"]
    payload = {
        "artifact": str(outcome.artifact_dir),
        "version": outcome.version,
        "mlflow_run_id": outcome.run_id,
        "registered_version": outcome.registered_version,
        "timings_s": outcome.timings_s,
        "config": config.params(),
        "evaluation": outcome.evaluation,
        "synthetic": True,
    }
    results = _write_results("train", payload)
    typer.echo(
        f"model {name} {outcome.version} -> {outcome.artifact_dir}\n"
        f"synthetic hold-out: AUROC {overall['auroc']:.3f} "
        f"{format_interval(overall.get('auroc_ci'))}, "
        f"ECE {overall['ece']:.3f}; best rule {t['best_rule']} AUROC "
        f"{t['best_rule_auroc']:.3f}\n"
        f"MLflow run {outcome.run_id} registered version {outcome.registered_version}; "
        f"results {results}; {sum(outcome.timings_s.values()):.0f} s"
    )


@app.command()
def evaluate(
    model: Annotated[
        str, typer.Option(help="Artifact folder, or models:/<name>@<alias> from the registry.")
    ] = "shipped",
    n_patients: Annotated[int, typer.Option(help="Patients in the fresh evaluation cohort.")] = 500,
    days: Annotated[int, typer.Option(help="Days of follow-up.")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the evaluation cohort.")] = 4242,
    tracking_uri: UriOpt = None,
    track: Annotated[bool, typer.Option(help="Log the evaluation to MLflow.")] = True,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for CIs.")] = 200,
) -> None:
    """Evaluate a model artifact against the rule baselines on a freshly simulated cohort."""
    import tempfile

    import numpy as np

    from models.artifact import SHIPPED_ARTIFACT_DIR
    from models.runtime import OnnxRiskModel
    from training.pipeline import evaluate_holdout, format_interval
    from training.simulator import simulate_cohort, snapshot_dataset
    from training.tracking import ensure_experiment, use_tracking

    with tempfile.TemporaryDirectory() as tmp:
        if model == "shipped":
            folder = SHIPPED_ARTIFACT_DIR
        elif model.startswith("models:/"):
            import mlflow

            from training.registry import _download_artifact, _version_by_alias

            uri = use_tracking(tracking_uri)
            reg_name, _, alias = model.removeprefix("models:/").partition("@")
            client = mlflow.MlflowClient(tracking_uri=uri)
            version = _version_by_alias(client, reg_name, alias or "champion")
            if version is None:
                raise typer.BadParameter(f"{model} does not resolve in the registry")
            folder = _download_artifact(client, reg_name, version, Path(tmp) / "model")
        else:
            folder = Path(model)
        risk = OnnxRiskModel(folder).load()
        cohort = simulate_cohort(n_patients, days, seed)
        X, y, meta = snapshot_dataset(cohort)
        prob = risk.predict(X).probability
        threshold = float(
            (risk.manifest.extra if risk.manifest else {}).get("alert_threshold", 0.5)
        )
        evaluation = evaluate_holdout(
            cohort, X, y, meta, np.asarray(prob), threshold, seed, bootstrap
        )
    run_id = None
    if track:
        import mlflow

        from training.pipeline import _flat_metrics

        uri = use_tracking(tracking_uri)
        exp = ensure_experiment(f"{risk.name}-evaluation", uri)
        with mlflow.start_run(experiment_id=exp, run_name=f"evaluate {risk.version}") as run:
            mlflow.log_params(
                {
                    "model": model,
                    "model_version": risk.version,
                    "seed": seed,
                    "n_patients": n_patients,
                    "days": days,
                }
            )
            mlflow.set_tags({"synthetic_data": "true"})
            mlflow.log_metrics(_flat_metrics(evaluation))
            run_id = run.info.run_id
    results = _write_results(
        "evaluate",
        {
            "model": model,
            "version": risk.version,
            "mlflow_run_id": run_id,
            "evaluation": evaluation,
            "synthetic": True,
        },
    )
    o, t = evaluation["model"]["overall"], evaluation["targets"]
    typer.echo(
        f"{risk.name} {risk.version} on synthetic cohort seed {seed}: AUROC "
        f"{o['auroc']:.3f} {format_interval(o['auroc_ci'])}, ECE {o['ece']:.3f}; best rule "
        f"{t['best_rule']} {t['best_rule_auroc']:.3f}; MLflow run {run_id}; "
        f"results {results}"
    )


@app.command("evaluate-sites")
def evaluate_sites(
    n_patients: Annotated[int, typer.Option(help="Patients per site profile.")] = 800,
    days: Annotated[int, typer.Option(help="Days of follow-up.")] = 45,
    seed: Annotated[int, typer.Option(help="Seed (same seed, same cohorts).")] = 11,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for CIs.")] = 100,
) -> None:
    """Leave-one-profile-out: train on all site profiles but one, score the one left out; the
    model beside NEWS2, the weight rule and a personal z-score (synthetic data)."""
    from training.sites import leave_one_profile_out, lopo_table

    result = leave_one_profile_out(
        n_patients, days, seed, n_boot=bootstrap, progress=lambda m: typer.echo(m, err=True)
    )
    table = lopo_table(result)
    path = _write_results("evaluate-sites", {**result, "table_markdown": table})
    typer.echo(table + f"\n\nsynthetic data (training/simulator.py site profiles); results {path}")


@app.command()
def promote(
    name: NameOpt = "home-followup-deterioration",
    tracking_uri: UriOpt = None,
) -> None:
    """Move alias 'champion' to the 'challenger' version if it passes the written gate."""
    from training.registry import RegistryError
    from training.registry import promote as run_promotion

    try:
        result = run_promotion(name, tracking_uri)
    except RegistryError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"{'PROMOTED' if result.promoted else 'NOT PROMOTED'} {name} v"
        f"{result.challenger_version} (champion was {result.champion_version}): "
        f"{result.decision.reason}\nrecord {result.record_path}; MLflow run "
        f"{result.run_id}"
    )
    if not result.promoted:
        raise typer.Exit(1)
