"""Data tests refuse bad datasets before any training starts."""

import numpy as np
import pandas as pd
import pytest

from models.features import FEATURE_NAMES
from training.datachecks import DataCheckError, check_training_data, split_by_patient


@pytest.fixture()
def data(small_dataset):
    X, y, meta = small_dataset
    return X.copy(), y.copy(), meta.copy()


def test_clean_dataset_passes_and_split_is_by_patient(data):
    X, y, meta = data
    splits = split_by_patient(meta, seed=0)
    counts = check_training_data(X, y, meta, splits)
    assert sum(counts.values()) == len(y)
    groups = [set(meta["patient"][m]) for m in splits.values()]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2])


def test_leakage_is_refused(data):
    X, y, meta = data
    splits = split_by_patient(meta, seed=0)
    first_train_patient = meta["patient"][splits["train"]].iloc[0]
    splits["test"] = splits["test"] | (meta["patient"] == first_train_patient).to_numpy()
    with pytest.raises(DataCheckError, match="leakage: 1 patient"):
        check_training_data(X, y, meta, splits)


def test_missing_labels_are_refused(data):
    X, y, meta = data
    labels = y.astype(float)
    labels[5] = np.nan
    with pytest.raises(DataCheckError, match="1 rows have no label"):
        check_training_data(X, labels, meta, split_by_patient(meta, 0))


def test_labels_outside_0_1_are_refused(data):
    X, y, meta = data
    y[3] = 2
    with pytest.raises(DataCheckError, match=r"labels must be 0 or 1, found \[2.0\]"):
        check_training_data(X, y, meta, split_by_patient(meta, 0))


def test_feature_outside_the_spec_is_refused(data):
    X, y, meta = data
    frame = pd.DataFrame(X, columns=FEATURE_NAMES)
    frame["patient_postcode"] = 5003.0
    with pytest.raises(DataCheckError, match="not in the spec: \\['patient_postcode'\\]"):
        check_training_data(frame, y, meta, split_by_patient(meta, 0))
    with pytest.raises(DataCheckError, match="missing: \\['age_band'\\]"):
        check_training_data(
            frame.drop(columns=["age_band", "patient_postcode"]), y, meta, split_by_patient(meta, 0)
        )


def test_nulls_in_metadata_and_infinite_features_are_refused(data):
    X, y, meta = data
    meta.loc[0, "sex"] = None
    with pytest.raises(DataCheckError, match="'sex' has 1 nulls"):
        check_training_data(X, y, meta, split_by_patient(meta, 0))
    meta.loc[0, "sex"] = "female"
    X[0, 0] = np.inf
    with pytest.raises(DataCheckError, match="infinite values"):
        check_training_data(X, y, meta, split_by_patient(meta, 0))
