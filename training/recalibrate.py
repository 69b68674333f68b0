"""Local recalibration from a site's recorded outcomes (``triage recalibrate``).

Per pathway, an affine map of the model's logit is fitted on the site's labelled assessments:
``intercept`` shifts the logit (the site's event rate differs, the ranking holds), ``platt`` also
scales it. The site's patients are split in two: the map is fitted on one half and checked on
the other (ECE before and after), then the operating points are chosen again on the site's rows.
The result is a new model version (same ONNX bytes, a new manifest) that goes through the same
promotion gate and registry as any other challenger.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from models.artifact import MANIFEST_FILE, Manifest
from models.recalibration import recalibrate
from models.runtime import OnnxRiskModel
from training.evaluation import ece
from training.model_fit import platt_fit
from training.operating_points import choose_operating_points

Method = Literal["intercept", "platt"]
MIN_EVENTS = 10  # fewer positive rows in a pathway: no map for it (kept as shipped)


@dataclass
class SiteRows:
    """Labelled rows of one site (one per patient-day), as service.domain.outcomes gives them."""

    X: np.ndarray
    y: np.ndarray
    pathway: np.ndarray
    patient: np.ndarray
    time_s: np.ndarray
    time_to_event_h: np.ndarray

    def take(self, sel: np.ndarray) -> SiteRows:
        return SiteRows(
            self.X[sel],
            self.y[sel],
            self.pathway[sel],
            self.patient[sel],
            self.time_s[sel],
            self.time_to_event_h[sel],
        )

    def meta(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            {
                "patient": self.patient,
                "pathway": self.pathway,
                "time_s": self.time_s,
                "time_to_event_h": self.time_to_event_h,
            }
        )


@dataclass
class RecalibrationResult:
    artifact_dir: Path
    version: str
    source_version: str
    maps: dict[str, dict[str, Any]]
    check: dict[str, Any]
    operating_points: dict[str, Any]
    holdout: SiteRows
    notes: list[str] = field(default_factory=list)


def intercept_fit(logit: np.ndarray, y: np.ndarray, iterations: int = 50) -> float:
    """The shift b of σ(logit + b) that minimises the log-loss (Newton's method)."""
    b = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(logit + b)))
        step = float((p - y).sum() / max(float((p * (1 - p)).sum()), 1e-12))
        b -= step
        if abs(step) < 1e-12:
            break
    return b


def fit_pathway_maps(
    logit: np.ndarray,
    y: np.ndarray,
    pathway: np.ndarray,
    method: Method,
    min_events: int = MIN_EVENTS,
) -> dict[str, dict[str, Any]]:
    """pathway -> {"scale", "shift", "rows", "events"} (no entry: too few events to fit)."""
    maps: dict[str, dict[str, Any]] = {}
    for pw in sorted(set(pathway.tolist())):
        sel = pathway == pw
        events = int(y[sel].sum())
        if events < min_events or events == sel.sum():
            continue
        if method == "platt":
            scale, shift = platt_fit(logit[sel], y[sel].astype(np.float64))
            if scale <= 0:  # a map must keep the ranking; fall back to a shift
                scale, shift = 1.0, intercept_fit(logit[sel], y[sel].astype(np.float64))
        else:
            scale, shift = 1.0, intercept_fit(logit[sel], y[sel].astype(np.float64))
        maps[pw] = {"scale": scale, "shift": shift, "rows": int(sel.sum()), "events": events}
    return maps


def _split_patients(patient: np.ndarray, seed: int) -> np.ndarray:
    """True for rows of the fitting half (patients drawn at random, rows stay together)."""
    keys = np.unique(patient)
    rng = np.random.default_rng(seed)
    chosen = set(rng.permutation(keys)[: (len(keys) + 1) // 2].tolist())
    return np.array([p in chosen for p in patient.tolist()], dtype=bool)


def recalibrate_artifact(
    source: Path,
    dest: Path,
    rows: SiteRows,
    *,
    organisation: str,
    method: Method = "platt",
    seed: int = 0,
    min_events: int = MIN_EVENTS,
    n_boot: int = 200,
) -> RecalibrationResult:
    """Fit per-pathway maps on half the site's patients, check on the other half, write a new
    artifact version with the maps and re-chosen operating points."""
    model = OnnxRiskModel(source).load()
    assert model.manifest is not None
    raw = model.predict(rows.X)
    fit_half = _split_patients(rows.patient, seed)
    fit, check = rows.take(fit_half), rows.take(~fit_half)
    notes: list[str] = []
    maps = fit_pathway_maps(raw.logit[fit_half], fit.y, fit.pathway, method, min_events)
    for pw in sorted(set(rows.pathway.tolist()) - set(maps)):
        notes.append(f"{pw}: fewer than {min_events} events in the fitting half; left as shipped")
    block = {"recalibration": {"pathways": maps}}
    # "Before" is what the site is served now (the source may carry a recalibration already);
    # the new maps are fitted on the raw logits and replace it.
    before = recalibrate(raw, model.manifest.extra, rows.pathway.tolist()).probability[~fit_half]
    after = recalibrate(raw, block, rows.pathway.tolist()).probability[~fit_half]
    check_figures: dict[str, Any] = {
        "rows": len(check.y),
        "events": int(check.y.sum()),
        "ece_before": ece(before, check.y) if len(check.y) else float("nan"),
        "ece_after": ece(after, check.y) if len(check.y) else float("nan"),
        "pathways": {},
    }
    for pw in sorted(set(check.pathway.tolist())):
        sel = check.pathway == pw
        check_figures["pathways"][pw] = {
            "rows": int(sel.sum()),
            "events": int(check.y[sel].sum()),
            "ece_before": ece(before[sel], check.y[sel]),
            "ece_after": ece(after[sel], check.y[sel]),
        }
    # Operating points: chosen again on the site's rows, recalibrated, where the pathway has
    # enough events; elsewhere the shipped thresholds are carried through the map (same alerts).
    p_all = recalibrate(raw, block, rows.pathway.tolist()).probability
    chosen = choose_operating_points(p_all, rows.y, rows.meta(), seed, n_boot)
    shipped = (model.manifest.extra.get("operating_points") or {}).get("pathways") or {}
    points: dict[str, Any] = {}
    for pw, entry in shipped.items():
        site_events = int(rows.y[rows.pathway == pw].sum())
        if pw in chosen["pathways"] and site_events >= min_events:
            points[pw] = {**chosen["pathways"][pw], "chosen_on": f"site {organisation}"}
            continue
        scale, shift = (maps[pw]["scale"], maps[pw]["shift"]) if pw in maps else (1.0, 0.0)
        carried = json.loads(json.dumps(entry))
        for point in carried["points"].values():
            t = min(max(float(point["threshold"]), 1e-9), 1 - 1e-9)
            point["threshold"] = float(1 / (1 + np.exp(-(scale * np.log(t / (1 - t)) + shift))))
        points[pw] = {**carried, "chosen_on": "shipped validation (too few site events)"}
    operating_points = {
        "pathways": points,
        "note": f"re-chosen on the recorded outcomes of organisation {organisation} where a "
        f"pathway had at least {min_events} events; otherwise the shipped points, mapped",
    }
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M")
    version = f"{model.manifest.version}+recal.{organisation}.{stamp}"[:64]
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    manifest = Manifest.read(dest)
    manifest.version = version
    manifest.created = datetime.now(UTC).replace(microsecond=0).isoformat()
    manifest.extra["recalibration"] = {
        "method": method,
        "organisation": organisation,
        "from_version": model.manifest.version,
        "pathways": maps,
        "check": check_figures,
        "note": "fitted on half the site's patients, checked on the other half",
    }
    manifest.extra["operating_points"] = operating_points
    manifest.write(dest)
    Manifest.read(dest).verify(dest)
    assert (dest / MANIFEST_FILE).is_file()
    return RecalibrationResult(
        dest,
        version,
        model.manifest.version,
        maps,
        check_figures,
        operating_points,
        check,
        notes,
    )


def register_recalibrated(
    result: RecalibrationResult, name: str, tracking_uri: str | None = None
) -> tuple[str, str]:
    """Log the new version as an MLflow run, register it with alias ``challenger`` (the gate
    decides on promotion) and return (run id, registered version)."""
    import tempfile

    import mlflow
    import mlflow.onnx
    import onnx

    from models.features import FEATURE_NAMES
    from training.artifacts import write_npz_deterministic
    from training.tracking import ensure_experiment, use_tracking

    uri = use_tracking(tracking_uri)
    experiment_id = ensure_experiment(name, uri)
    recal = Manifest.read(result.artifact_dir).extra["recalibration"]
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"recalibrate {result.source_version} for {recal['organisation']}",
    ) as run:
        mlflow.log_params(
            {
                "method": recal["method"],
                "organisation": recal["organisation"],
                "from_version": result.source_version,
                "pathways_recalibrated": ",".join(sorted(result.maps)) or "none",
            }
        )
        check = result.check
        for key in ("ece_before", "ece_after"):
            if np.isfinite(check[key]):
                mlflow.log_metric(f"site_check_{key}", float(check[key]))
        mlflow.log_artifacts(str(result.artifact_dir), artifact_path="artifact")
        with tempfile.TemporaryDirectory() as tmp:
            h = result.holdout
            path = Path(tmp) / "holdout.npz"
            write_npz_deterministic(
                path,
                {
                    "features": np.asarray(h.X, dtype=np.float32),
                    "label": np.asarray(h.y, dtype=np.int8),
                    "feature_names": np.asarray(FEATURE_NAMES),
                    "patient": h.patient.astype(str),
                    "pathway": h.pathway.astype(str),
                    "age_band": np.full(len(h.y), "all"),
                    "sex": np.full(len(h.y), "all"),
                    "time_s": h.time_s,
                    "time_to_event_h": h.time_to_event_h,
                },
            )
            mlflow.log_artifact(str(path), artifact_path="evaluation")
        info = mlflow.onnx.log_model(
            onnx.load(str(result.artifact_dir / "model.onnx")),
            name="model",
            registered_model_name=name,
            save_as_external_data=False,
        )
        version = str(info.registered_model_version)
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.set_registered_model_alias(name, "challenger", version)
    client.update_model_version(
        name,
        version,
        description=f"Recalibrated ({recal['method']}) from version {result.source_version} on "
        f"the recorded outcomes of organisation {recal['organisation']}; site check ECE "
        f"{check['ece_before']:.3f} -> {check['ece_after']:.3f}. Synthetic training data; "
        "awaiting the promotion gate.",
    )
    for key, value in (
        ("manifest_version", result.version),
        ("recalibrated_from", result.source_version),
        ("synthetic_data", "true"),
    ):
        client.set_model_version_tag(name, version, key, value)
    return run.info.run_id, version
