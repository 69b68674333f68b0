"""MonitoringFrame, the exchange files and the reference saved with a model artifact."""

from __future__ import annotations

import numpy as np
import pytest
from monitoring_synth import simulate_window

from models.features import FEATURE_NAMES, N_FEATURES
from monitoring.data import (
    MonitoringFrame,
    ReferenceMissingError,
    load_reference,
    read_frame,
    reference_hash,
)


def _frame(n: int = 4) -> MonitoringFrame:
    return MonitoringFrame(
        X=np.zeros((n, N_FEATURES)),
        probability=np.full(n, 0.1),
        pathway=["copd"] * n,
        organisation=["974557746"] * n,
        scored_at=np.arange(n),
    )


def test_frame_refuses_wrong_shapes_and_unknown_raw_channels():
    with pytest.raises(ValueError, match=rf"\[n, {N_FEATURES}\]"):
        MonitoringFrame(
            X=np.zeros((3, 5)),
            probability=np.zeros(3),
            pathway=["a"] * 3,
            organisation=["o"] * 3,
            scored_at=np.zeros(3),
        )
    with pytest.raises(ValueError, match="probability"):
        MonitoringFrame(
            X=np.zeros((3, N_FEATURES)),
            probability=np.zeros(2),
            pathway=["a"] * 3,
            organisation=["o"] * 3,
            scored_at=np.zeros(3),
        )
    with pytest.raises(ValueError, match="unknown channels"):
        MonitoringFrame(
            X=np.zeros((3, N_FEATURES)),
            probability=np.zeros(3),
            pathway=["a"] * 3,
            organisation=["o"] * 3,
            scored_at=np.zeros(3),
            raw={"pulse": np.zeros(3)},
        )


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_exchange_file_round_trip(tmp_path, suffix):
    frame = simulate_window(30, seed=3)
    path = tmp_path / f"window{suffix}"
    if suffix == ".npz":
        frame.to_npz(path)
    else:
        import pandas as pd

        columns = {name: frame.X[:, j] for j, name in enumerate(FEATURE_NAMES)}
        columns.update(
            probability=frame.probability,
            pathway=frame.pathway,
            organisation=frame.organisation,
            scored_at=frame.scored_at,
            outcome=frame.outcome,
            patient=frame.patient,
            **{f"raw_{k}": v for k, v in frame.raw.items()},
        )
        pd.DataFrame(columns).to_parquet(path)
    back = read_frame(path)
    np.testing.assert_array_equal(back.X, frame.X)
    np.testing.assert_array_equal(back.pathway, frame.pathway)
    np.testing.assert_array_equal(back.outcome, frame.outcome)
    assert set(back.raw) == set(frame.raw)
    assert reference_hash(back) == reference_hash(frame)


def test_a_file_for_another_feature_vector_is_refused(tmp_path):
    path = tmp_path / "old.npz"
    names = list(FEATURE_NAMES)
    names[0], names[1] = names[1], names[0]
    np.savez(
        path, X=np.zeros((2, N_FEATURES)), feature_names=np.asarray(names), probability=np.zeros(2)
    )
    with pytest.raises(ValueError, match="another feature vector"):
        read_frame(path)


def test_missing_feature_columns_are_named(tmp_path):
    import pandas as pd

    path = tmp_path / "partial.parquet"
    pd.DataFrame({"probability": [0.1], FEATURE_NAMES[0]: [1.0]}).to_parquet(path)
    with pytest.raises(ValueError, match=FEATURE_NAMES[1]):
        read_frame(path)


def test_reference_from_a_trained_artifact(tiny_artifact):
    reference = load_reference(tiny_artifact)
    with np.load(tiny_artifact / "reference.npz") as saved:
        np.testing.assert_allclose(reference.X, saved["features"].astype(np.float64))
        np.testing.assert_array_equal(reference.outcome, saved["label"].astype(np.float64))
        np.testing.assert_array_equal(reference.pathway, saved["pathway"])
    assert np.isfinite(reference.probability).all()
    assert set(reference.organisation.tolist()) == {"unknown"}
    assert reference_hash(load_reference(tiny_artifact)) == reference_hash(reference)


def test_artifact_without_reference_says_so(tmp_path):
    with pytest.raises(ReferenceMissingError, match=r"reference\.npz"):
        load_reference(tmp_path)


def test_take_selects_rows_of_every_column():
    frame = simulate_window(20, seed=4)
    rows = frame.pathway == "copd"
    part = frame.take(rows)
    assert len(part) == int(rows.sum())
    assert set(part.pathway.tolist()) == {"copd"}
    assert all(len(v) == len(part) for v in part.raw.values())
    assert part.outcome is not None and len(part.outcome) == len(part)
    assert len(_frame()) == 4
