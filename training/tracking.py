"""MLflow set-up, resolved when a job runs (never at import time)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def var_dir() -> Path:
    """The var folder: TRIAGE_VAR_DIR, else ./var."""
    return Path(os.environ.get("TRIAGE_VAR_DIR", "var")).resolve()


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store under the var folder."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    folder = var_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def use_tracking(uri: str | None) -> str:
    """Point MLflow (tracking and registry) at ``uri`` or the default; return the URI."""
    import mlflow

    uri = uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str, uri: str) -> str:
    """Experiment id; a local store keeps its artifacts under the var folder, not ./mlruns."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = None
    if uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri:
        db_path = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:") else None
        base = db_path.parent if db_path else var_dir()
        location = (base / "mlartifacts").resolve().as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def git_version() -> str:
    """Commit of the code that trained, with '+dirty' when the tree had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, fixed arguments
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "training", "models"],  # noqa: S607
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def dataset_hash(X: np.ndarray, y: np.ndarray) -> str:
    """sha256 over the feature matrix and labels (NaN-stable, float64 bytes)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(np.asarray(X, dtype=np.float64)).tobytes())
    digest.update(np.ascontiguousarray(np.asarray(y, dtype=np.int64)).tobytes())
    return digest.hexdigest()
