"""Site profiles (another hospital), the personal z-score baseline, and leave-one-profile-out."""

from __future__ import annotations

import numpy as np
import pytest

from models.features import DAY_S, HOUR_S
from training.simulator import Readings, simulate_cohort
from training.sites import (
    SITE_PROFILES,
    SiteProfile,
    _site_readings,
    leave_one_profile_out,
    lopo_table,
    personal_zscore,
)

SITES = {s.name: s for s in SITE_PROFILES}


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(30, 21, seed=4)


def test_another_device_shifts_its_readings_and_nothing_else(cohort) -> None:
    r = cohort.readings
    other = _site_readings(cohort, SITES["other-device"], 0)
    assert len(other) == len(r)
    for channel, bias in (("spo2", -1.0), ("weight", 0.3), ("systolic_bp", 3.0)):
        sel = r.channel == channel
        np.testing.assert_allclose(other.value[sel], r.value[sel] + bias)
    hr = r.channel == "heart_rate"
    np.testing.assert_array_equal(other.value[hr], r.value[hr])


def test_poor_adherence_drops_whole_days_in_streaks(cohort) -> None:
    site = SiteProfile("x", "x", missed_streak_start=0.3, missed_streak_mean_days=3)
    kept = _site_readings(cohort, site, 1)
    assert len(kept) < len(cohort.readings)
    day = lambda rr: set(zip(rr.patient.tolist(), ((rr.time_s - cohort.start_s) // DAY_S).tolist()))  # noqa: E731
    before, after = day(cohort.readings), day(kept)
    assert after < before  # whole patient-days vanish, none appear
    # Every remaining patient-day still has every reading it had (nothing half-dropped).
    r = cohort.readings
    same = np.array(
        [(p, d) in after for p, d in zip(r.patient, (r.time_s - cohort.start_s) // DAY_S)]
    )
    assert same.sum() == len(kept)


def test_steady_habits_keep_one_session_a_day(cohort) -> None:
    steady = _site_readings(cohort, SITES["steady-habits"], 0)
    key = list(
        zip(
            steady.patient.tolist(),
            steady.channel.tolist(),
            ((steady.time_s - cohort.start_s) // DAY_S).tolist(),
            steady.message_id.tolist(),
        )
    )
    per_day: dict[tuple[int, str, int], set[str]] = {}
    for p, ch, d, m in key:
        per_day.setdefault((p, ch, d), set()).add(m)
    assert max(len(v) for v in per_day.values()) == 1


def test_personal_zscore_by_hand() -> None:
    """Stable pulse 70 ± 2 for ten days, then 90: a large positive z; SpO2 falling counts too."""
    t0 = 1_800_000_000
    rows = [(0, "heart_rate", t0 + d * DAY_S, 70.0 + (2 if d % 2 else -2)) for d in range(10)]
    rows += [(0, "heart_rate", t0 + 10 * DAY_S, 90.0)]
    rows += [(1, "spo2", t0 + d * DAY_S, 95.0 + (1 if d % 2 else -1)) for d in range(10)]
    rows += [(1, "spo2", t0 + 10 * DAY_S, 90.0)]
    readings = Readings(
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=float),
        np.array([f"m{i}" for i in range(len(rows))]),
    )

    class _Cohort:
        pass

    c = _Cohort()
    c.readings = readings  # type: ignore[attr-defined]
    at = np.array([t0 + 10 * DAY_S + HOUR_S] * 2, dtype=np.int64)
    z = personal_zscore(c, np.array([0, 1]), at)  # type: ignore[arg-type]
    hr_sd = np.std([68.0, 72.0] * 5)
    assert z[0] == pytest.approx((90 - 70) / max(hr_sd, 3.0), rel=0.05)  # SD floor 3 /min
    assert z[1] == pytest.approx(5.0, rel=0.05)  # (95 − 90) / 1
    early = personal_zscore(c, np.array([0]), np.array([t0 + DAY_S]))  # type: ignore[arg-type]
    assert early[0] == -np.inf  # too few readings for a baseline


def test_leave_one_profile_out_scores_every_profile_it_never_saw() -> None:
    from training.model_fit import StumpConfig

    lopo = leave_one_profile_out(
        n_patients=40, days=14, stump=StumpConfig(max_iter=30, min_samples_leaf=10), n_boot=5
    )
    assert lopo["synthetic"] is True
    assert set(lopo["results"]) == set(SITES)
    for r in lopo["results"].values():
        assert 0.0 <= r["model"]["auroc"] <= 1.0
        assert "budget-2" not in r  # figures are named by what they are
        red = r["model"]["red_budget_2"]["overall"]
        assert red["alerts_per_100_patient_days"] >= 0
        assert {"news2_ge_5", "weight_rule_hf", "personal_zscore"} <= set(r)
    table = lopo_table(lopo)
    assert "personal z-score" in table and "steady-habits" in table
