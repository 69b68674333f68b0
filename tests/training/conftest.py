"""Shared small cohorts and a tiny trained model, built once per test session."""

import pytest

from training.simulator import simulate_cohort, snapshot_dataset


@pytest.fixture(scope="session")
def small_cohort():
    return simulate_cohort(150, 45, seed=11)


@pytest.fixture(scope="session")
def small_dataset(small_cohort):
    return snapshot_dataset(small_cohort)
