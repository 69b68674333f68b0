"""build_window_frame: the store's readings -> one row per patient-day in a window of clinical
time, by the same definition as the model's reference sample (models.features)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select

from models.features import DAY_S, FEATURE_INDEX
from tests.helpers import enrol, observation, post_fhir

# Three days of clinical time, a week ago (ingested now: a backlog).
DAY0 = (datetime.now(UTC) - timedelta(days=8)).replace(hour=0, minute=0, second=0, microsecond=0)


def _patient_with_backlog(client: Any, auth: Any) -> str:
    """Readings on day 0 (07:00, 08:00) and day 2 (07:30); nothing on day 1."""
    integration = auth("integration")
    patient = enrol(client, integration, pathway="heart-failure")
    sent = [
        ("weight", 81.5, DAY0 + timedelta(hours=7)),
        ("spo2", 93, DAY0 + timedelta(hours=8)),
        ("spo2", 91, DAY0 + timedelta(days=2, hours=7, minutes=30)),
    ]
    for i, (name, value, when) in enumerate(sent):
        r = post_fhir(
            client,
            "/fhir/Observation",
            observation(patient["id"], name, value, when, f"b-{uuid.uuid4()}-{i}"),
            integration,
        )
        assert r.status_code == 201, r.text
    return str(patient["id"])


def _frame(client: Any, start: datetime, end: datetime, **scope: Any) -> Any:
    from service.domain.monitoring import build_window_frame

    model = client.app.state.models.current().model
    with client.app.state.sessions() as session:
        return build_window_frame(session, start, end, model, **scope)


def test_one_row_per_patient_day_on_clinical_time(client: Any, auth: Any) -> None:
    from service.db.tables import Assessment

    patient_id = _patient_with_backlog(client, auth)
    frame = _frame(client, DAY0, DAY0 + timedelta(days=3))
    mine = frame.patient == patient_id
    times = frame.scored_at[mine]
    day0 = int(DAY0.timestamp())
    # Day 0 at its newest reading, day 1 (no reading) at its end, day 2 at its reading.
    assert list(times) == [day0 + 8 * 3600, day0 + 2 * DAY_S - 1, day0 + 2 * DAY_S + 7.5 * 3600]
    hours_since = frame.X[mine, FEATURE_INDEX["hours_since_last_measurement_h"]]
    np.testing.assert_allclose(hours_since, [0.0, 40.0 - 1 / 3600, 0.0])
    np.testing.assert_array_equal(frame.raw["spo2"][mine], [93.0, 93.0, 91.0])
    np.testing.assert_array_equal(frame.raw["weight"][mine], [81.5, 81.5, 81.5])
    # The same feature code as scoring: the assessment made at the day's newest reading
    # holds the very same vector.
    with client.app.state.sessions() as session:
        scored = {
            int(a.as_of.replace(tzinfo=UTC).timestamp()): a
            for a in session.scalars(select(Assessment).where(Assessment.patient_id == patient_id))
        }
    stored = scored[day0 + 8 * 3600]
    np.testing.assert_array_equal(
        frame.X[mine][0], [np.nan if v is None else v for v in stored.features]
    )
    assert frame.probability[mine][0] == stored.probability
    assert np.isnan(frame.outcome[mine]).all()  # nothing recorded yet: unknown, never 0


def test_window_and_scope_select_on_clinical_time(client: Any, auth: Any) -> None:
    patient_id = _patient_with_backlog(client, auth)
    now = datetime.now(UTC)
    # Ingested a minute ago, measured a week ago: a window of "the last hour" has none of it.
    assert patient_id not in set(_frame(client, now - timedelta(hours=1), now).patient)
    assert patient_id not in set(
        _frame(client, DAY0, DAY0 + timedelta(days=3), pathway="copd").patient
    )
    other = _frame(client, DAY0, DAY0 + timedelta(days=3), organisation="974557746")
    assert patient_id not in set(other.patient)
    # Replaying the same period gives the same rows.
    a = _frame(client, DAY0 + timedelta(days=1), DAY0 + timedelta(days=2))
    b = _frame(client, DAY0 + timedelta(days=1), DAY0 + timedelta(days=2))
    np.testing.assert_array_equal(a.X, b.X)
    assert list(a.scored_at[a.patient == patient_id]) == [int(DAY0.timestamp()) + 2 * DAY_S - 1]


def _outcome(session: Any, patient_id: str, at: datetime, deteriorated: bool) -> None:
    from service.db.tables import Outcome

    session.add(
        Outcome(
            id=str(uuid.uuid4()),
            patient_id=patient_id,
            occurred_at=at,
            deteriorated=deteriorated,
            source="test",
            recorded_by="t",
            recorded_at=datetime.now(UTC),
        )
    )


def test_a_hospital_stay_is_no_missed_days_and_outcomes_use_the_72_hour_horizon(
    client: Any, auth: Any
) -> None:
    from service.db.engine import transaction

    patient_id = _patient_with_backlog(client, auth)
    admitted = DAY0 + timedelta(hours=9)  # after day 0's readings; back home on day 2
    with transaction(client.app.state.sessions) as session:
        _outcome(session, patient_id, admitted, True)
    frame = _frame(client, DAY0, DAY0 + timedelta(days=3))
    mine = frame.patient == patient_id
    day0 = int(DAY0.timestamp())
    # Day 1 was spent in hospital: no row (as the training snapshots skip those days).
    assert list(frame.scored_at[mine]) == [day0 + 8 * 3600, day0 + 2 * DAY_S + 7.5 * 3600]
    # Day 0's row is 1 h before the deterioration (inside 72 h); day 2's is after it, with no
    # follow-up beyond its own horizon known: unknown, never counted as a negative.
    np.testing.assert_array_equal(frame.outcome[mine], [1.0, np.nan])
