"""Local recalibration from recorded outcomes: the map is recovered, calibration improves on
patients it was not fitted on, explanations stay exact, operating points are chosen again, and
`triage recalibrate` reads a service database and hands a challenger to the same gate."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pytest

from models.artifact import Manifest
from models.recalibration import recalibrate
from models.runtime import OnnxRiskModel
from training.evaluation import ece
from training.recalibrate import SiteRows, recalibrate_artifact
from training.simulator import simulate_cohort, snapshot_dataset

SITE_SHIFT = 1.4  # the site's events are more frequent than the model expects (logit + 1.4)
ORG = "983974899"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.fixtures import build_tiny_artifact

    return build_tiny_artifact(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(150, 30, seed=77)


@pytest.fixture(scope="module")
def site(tiny: Path, cohort) -> tuple[SiteRows, np.ndarray]:
    """A site's rows: real features from the simulator, outcomes drawn from a shifted model."""
    X, _, meta = snapshot_dataset(cohort)
    logit = OnnxRiskModel(tiny).load().predict(X).logit
    rng = np.random.default_rng(5)
    y = (rng.random(len(logit)) < 1 / (1 + np.exp(-(logit + SITE_SHIFT)))).astype(np.int64)
    tte = np.where(y == 1, 24.0, np.nan)
    rows = SiteRows(
        X,
        y,
        np.asarray(meta["pathway"]).astype(str),
        np.asarray(meta["patient"]).astype(str),
        np.asarray(meta["time_s"], dtype=np.int64),
        tte,
    )
    return rows, logit


def test_intercept_shift_is_recovered_and_calibration_improves_on_unseen_patients(
    tiny: Path, site: tuple[SiteRows, np.ndarray], tmp_path: Path
) -> None:
    rows, _ = site
    result = recalibrate_artifact(
        tiny, tmp_path / "recal", rows, organisation=ORG, method="intercept", n_boot=20
    )
    shifts = [m["shift"] for m in result.maps.values()]
    assert shifts and all(abs(s - SITE_SHIFT) < 0.6 for s in shifts), result.maps
    check = result.check
    assert check["ece_after"] < check["ece_before"]
    assert check["ece_after"] <= 0.05, check
    manifest = Manifest.read(result.artifact_dir)
    assert manifest.version.startswith("tiny-0+recal.983974899.")
    assert manifest.extra["recalibration"]["from_version"] == "tiny-0"
    recal_points = manifest.extra["operating_points"]["pathways"]
    assert set(recal_points) == set(Manifest.read(tiny).extra["operating_points"]["pathways"])


def test_recalibrated_prediction_stays_an_exact_additive_explanation(
    tiny: Path, site: tuple[SiteRows, np.ndarray], tmp_path: Path
) -> None:
    rows, _ = site
    result = recalibrate_artifact(
        tiny, tmp_path / "recal", rows, organisation=ORG, method="platt", n_boot=20
    )
    model = OnnxRiskModel(result.artifact_dir).load()
    pred = recalibrate(model.predict(rows.X[:50]), model.manifest.extra, rows.pathway[:50].tolist())
    sums = np.array([pred.intercept_of(i) for i in range(50)]) + pred.contributions.sum(axis=1)
    assert np.allclose(sums, pred.logit, atol=1e-9)
    assert np.allclose(pred.probability, 1 / (1 + np.exp(-pred.logit)))
    raw = model.predict(rows.X[:50]).probability
    assert ece(pred.probability, rows.y[:50]) <= ece(raw, rows.y[:50]) + 0.05


def test_triage_recalibrate_reads_outcomes_from_the_service_database_and_feeds_the_gate(
    tiny: Path, cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Assessments and outcomes stored as the service stores them; the command does the rest.

    The served model runs low at this site (its manifest shifts every pathway by −2); the
    outcomes are the simulator's own deteriorations.
    """
    import json
    import shutil

    from sqlalchemy.orm import Session
    from typer.testing import CliRunner

    from service.cli import app
    from service.db.engine import make_engine, migrate
    from service.db.tables import Assessment, Outcome, Patient
    from training.registry import promote

    served = tmp_path / "served"
    shutil.copytree(tiny, served)
    manifest = json.loads((served / "manifest.json").read_text())
    pathways = sorted(manifest["operating_points"]["pathways"])
    manifest["recalibration"] = {"pathways": {p: {"scale": 1.0, "shift": -2.0} for p in pathways}}
    (served / "manifest.json").write_text(json.dumps(manifest))
    X, y, meta = snapshot_dataset(cohort)
    rows = SiteRows(
        X,
        y,
        np.asarray(meta["pathway"]).astype(str),
        np.asarray(meta["patient"]).astype(str),
        np.asarray(meta["time_s"], dtype=np.int64),
        np.asarray(meta["time_to_event_h"], dtype=np.float64),
    )
    url = f"sqlite:///{tmp_path / 'triage.db'}"
    migrate(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    # Move the simulated times so that every assessment lies in the past.
    offset = int(now.timestamp()) - int(rows.time_s.max()) - 10 * 86400
    with Session(engine) as session:
        for key in sorted(set(rows.patient.tolist())):
            sel = rows.patient == key
            pathway = str(rows.pathway[sel][0])
            session.add(
                Patient(
                    id=f"p{key}",
                    identifier_system="urn:oid:2.16.578.1.12.4.1.4.1",
                    identifier_value=f"x{key}",
                    birth_date=date(1950, 1, 1),
                    sex="female",
                    pathway_id=pathway,
                    organisation=ORG,
                    unit="u",
                    created_at=now,
                    created_by="test",
                    pathway_options={},
                )
            )
            session.flush()  # the patient row first: assessments and outcomes point to it
            for i in np.flatnonzero(sel):
                as_of = datetime.fromtimestamp(int(rows.time_s[i]) + offset, UTC)
                session.add(
                    Assessment(
                        id=str(uuid.uuid4()),
                        patient_id=f"p{key}",
                        created_at=as_of,
                        as_of=as_of,
                        trigger="test",
                        model_name="tiny-test-model",
                        model_version="tiny-0",
                        pathway_id=pathway,
                        pathway_version=1,
                        rule_set_hash="h",
                        features=[None if np.isnan(v) else float(v) for v in rows.X[i]],
                        probability=None,
                        level="green",
                        explanation={},
                        basis=[],
                        organisation=ORG,
                    )
                )
            for onset in cohort.event_onset_s[int(key)]:
                if int(onset) + offset < now.timestamp():
                    session.add(
                        Outcome(
                            id=str(uuid.uuid4()),
                            patient_id=f"p{key}",
                            organisation=ORG,
                            event_type="hospital-admission",
                            occurred_at=datetime.fromtimestamp(int(onset) + offset, UTC),
                            deteriorated=True,
                            source="dips-admission",
                            recorded_by="test",
                            recorded_at=now,
                        )
                    )
            session.add(
                Outcome(
                    id=str(uuid.uuid4()),
                    patient_id=f"p{key}",
                    organisation=ORG,
                    event_type="none",
                    occurred_at=now - timedelta(hours=1),
                    deteriorated=False,
                    source="end-of-follow-up",
                    recorded_by="test",
                    recorded_at=now,
                )
            )
        session.commit()
    engine.dispose()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("TRIAGE_DATABASE_URL", url)
    monkeypatch.setenv("TRIAGE_MODEL_DIR", str(served))
    monkeypatch.setenv("TRIAGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("TRIAGE_MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(
        app,
        [
            "recalibrate",
            "--organisation",
            ORG,
            "--method",
            "intercept",
            "--min-events",
            "5",
            "--tracking-uri",
            uri,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "recalibrated tiny-0 -> tiny-0+recal.983974899." in result.output
    assert "registered home-followup-deterioration version 1 as 'challenger'" in result.output
    before, after = result.output.split("ECE ")[1].split(";")[0].split(" -> ")
    assert float(after) < float(before)
    client = mlflow.MlflowClient(tracking_uri=uri)
    v = client.get_model_version("home-followup-deterioration", "1")
    assert "Recalibrated (intercept) from version tiny-0" in v.description
    decision = promote("home-followup-deterioration", uri, record_dir=tmp_path / "records")
    assert decision.promoted and "no champion existed" in decision.decision.reason
    refused = CliRunner().invoke(app, ["recalibrate", "--organisation", "123"])
    assert refused.exit_code != 0
