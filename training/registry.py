"""MLflow model registry: resolve the champion for the service, and gated promotion."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import MODEL_FILE, ArtifactError, Manifest, sha256_file
from models.runtime import OnnxRiskModel
from training.gate import (
    GateDecision,
    GateMargins,
    apply_paired_gate,
    gate_metrics,
    paired_differences,
)
from training.tracking import ensure_experiment, use_tracking, var_dir

CHAMPION = "champion"
CHALLENGER = "challenger"


class RegistryError(RuntimeError):
    """The registry does not hold what was asked for."""


def _version_by_alias(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _download_artifact(client: Any, name: str, version: Any, dest: Path) -> Path:
    """The registered version's artifact folder, checked against the registered ONNX bytes."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(
            mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path="artifact", dst_path=tmp
            )
        )
        registered = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version.version}",
                dst_path=str(Path(tmp) / "flavour"),
            )
        )
        onnx_files = sorted(registered.rglob("*.onnx"))
        if not onnx_files or sha256_file(onnx_files[0]) != sha256_file(folder / MODEL_FILE):
            raise ArtifactError(
                f"models:/{name}/{version.version}: the registered ONNX file differs from the "
                "run's artifact folder"
            )
        staging = dest.parent / f".{dest.name}.incoming"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(folder, staging)
    Manifest.read(staging).verify(staging)
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    return dest


class GateRefused(RegistryError):
    """The champion's registry tags say the gate rejected it, or carry no gate decision."""


def gate_decision_of(version: Any) -> str | None:
    """The promotion gate's decision recorded on a registered version ("promoted"/"rejected")."""
    tags = getattr(version, "tags", None) or {}
    return tags.get("promotion_decision")


def resolve_champion(
    tracking_uri: str, name: str, dest: Path, override_reason: str | None = None
) -> Path:
    """Download ``models:/<name>@champion`` into ``dest`` (model.onnx + manifest.json ...).

    Refuses a version the gate rejected, or one with no gate decision (an alias set by hand),
    unless ``override_reason`` is given; the caller audits that override with both versions.
    """
    import mlflow

    use_tracking(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    version = _version_by_alias(client, name, CHAMPION)
    if version is None:
        raise RegistryError(f"model '{name}' has no version with alias '{CHAMPION}'")
    decision = gate_decision_of(version)
    if decision != "promoted" and not (override_reason and override_reason.strip()):
        why = (
            "the promotion gate rejected it"
            if decision == "rejected"
            else "it carries no promotion-gate decision (alias set outside `triage promote`?)"
        )
        raise GateRefused(
            f"models:/{name}@{CHAMPION} is version {version.version}, but {why}; refusing to "
            "load it without an explicit override with a reason"
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return _download_artifact(client, name, version, dest)


@dataclass
class PromotionResult:
    decision: GateDecision
    challenger_version: str
    champion_version: str | None
    record_path: Path
    promoted: bool
    run_id: str | None = None


def _holdout(run_id: str, tmp: Path) -> dict[str, np.ndarray]:
    import mlflow

    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="evaluation/holdout.npz", dst_path=str(tmp)
    )
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _scored(model: OnnxRiskModel, X: np.ndarray, holdout: dict[str, np.ndarray]) -> np.ndarray:
    """Probabilities as the service would serve them (a per-pathway recalibration applied)."""
    from models.recalibration import recalibrate

    prediction = model.predict(X)
    extra = model.manifest.extra if model.manifest else {}
    if "pathway" in holdout:
        prediction = recalibrate(prediction, extra, holdout["pathway"].astype(str).tolist())
    return np.asarray(prediction.probability)


def promote(
    name: str,
    tracking_uri: str | None = None,
    margins: GateMargins | None = None,
    record_dir: Path | None = None,
) -> PromotionResult:
    """Move ``champion`` to the ``challenger`` version if it passes the gate; record why."""
    import mlflow

    uri = use_tracking(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    challenger = _version_by_alias(client, name, CHALLENGER)
    if challenger is None:
        raise RegistryError(
            f"model '{name}' has no version with alias '{CHALLENGER}': train with --register first"
        )
    champion = _version_by_alias(client, name, CHAMPION)
    margins = margins or GateMargins()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        chall_dir = _download_artifact(client, name, challenger, tmp / "challenger")
        if champion is None:
            decision = GateDecision(
                True,
                f"no champion existed: version {challenger.version} becomes the first champion "
                "without a comparison (nothing to compare with)",
                [],
                margins,
            )
        elif champion.version == challenger.version:
            decision = GateDecision(
                False, f"version {challenger.version} is already the champion", [], margins
            )
        else:
            holdout = _holdout(challenger.run_id, tmp)
            X, y = holdout["features"], holdout["label"].astype(np.int64)
            metrics: dict[str, dict[str, Any]] = {}
            try:
                chall_model = OnnxRiskModel(chall_dir).load()
            except ArtifactError as exc:
                decision = GateDecision(
                    False, f"gate failed: challenger artifact: {exc}", [], margins
                )
            else:
                chall_p = _scored(chall_model, X, holdout)
                metrics["challenger"] = gate_metrics(chall_p, y, holdout)
                try:
                    champ_dir = _download_artifact(client, name, champion, tmp / "champion")
                    champ_model = OnnxRiskModel(champ_dir).load()
                    champ_p = _scored(champ_model, X, holdout)
                except Exception as exc:  # fail closed, whatever went wrong
                    decision = GateDecision(
                        False,
                        f"gate failed closed: champion version {champion.version} cannot be "
                        f"scored on the hold-out ({exc}); nothing is promoted. Retire it "
                        "explicitly or promote with an audited override.",
                        [],
                        margins,
                    )
                else:
                    metrics["champion"] = gate_metrics(champ_p, y, holdout)
                    paired = paired_differences(champ_p, chall_p, y, holdout["patient"])
                    decision = apply_paired_gate(
                        metrics["champion"], metrics["challenger"], paired, margins
                    )
    promoted = decision.passed and (champion is None or champion.version != challenger.version)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, challenger.version)
        client.delete_registered_model_alias(name, CHALLENGER)
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    record = {
        "time": now,
        "model": name,
        "challenger_version": challenger.version,
        "champion_version": champion.version if champion is not None else None,
        "promoted": promoted,
        **decision.as_dict(),
    }
    for key, value in (
        ("promotion_decision", "promoted" if promoted else "rejected"),
        ("promotion_reason", decision.reason[:4900]),
        ("promotion_time", now),
    ):
        client.set_model_version_tag(name, challenger.version, key, value)
    folder = record_dir or (var_dir() / "promotions")
    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / f"{name}-v{challenger.version}-{now.replace(':', '')}.json"
    record_path.write_text(json.dumps(record, indent=2, default=float), encoding="utf-8")
    experiment_id = ensure_experiment(f"{name}-promotions", uri)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"promote v{challenger.version}"
    ) as run:
        mlflow.log_params(
            {
                "challenger_version": challenger.version,
                "champion_version": record["champion_version"],
                **{f"margin_{k}": v for k, v in record["margins"].items()},
            }
        )
        mlflow.set_tags(
            {"decision": "promoted" if promoted else "rejected", "reason": decision.reason[:4900]}
        )
        mlflow.log_artifact(str(record_path), artifact_path="decision")
    return PromotionResult(
        decision,
        str(challenger.version),
        str(champion.version) if champion is not None else None,
        record_path,
        promoted,
        run.info.run_id,
    )
