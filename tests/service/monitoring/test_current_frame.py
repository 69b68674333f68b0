"""build_current_frame: stored assessments -> MonitoringFrame (features, raw values, outcome
labels at the 72-hour horizon, window and scope filters)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select

from models.features import FEATURE_INDEX
from tests.helpers import enrol, observation, post_fhir


def _scored_patient(client: Any, auth: Any) -> tuple[str, list[Any]]:
    integration = auth("integration")
    patient = enrol(client, integration, pathway="heart-failure")
    base = datetime.now(UTC) - timedelta(days=2)
    for i, (name, value) in enumerate([("weight", 81.5), ("spo2", 93), ("heart_rate", 88)]):
        r = post_fhir(
            client,
            "/fhir/Observation",
            observation(patient["id"], name, value, base + timedelta(hours=i), f"m-{i}"),
            integration,
        )
        assert r.status_code == 201, r.text
    from service.db.tables import Assessment

    with client.app.state.sessions() as session:
        rows = list(
            session.scalars(
                select(Assessment)
                .where(Assessment.patient_id == patient["id"])
                .order_by(Assessment.created_at)
            )
        )
    assert len(rows) == 3
    return patient["id"], rows


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


def test_frame_holds_features_raw_values_and_scope(client: Any, auth: Any) -> None:
    from service.domain.monitoring import build_current_frame

    _, rows = _scored_patient(client, auth)
    start = datetime.now(UTC) - timedelta(hours=1)
    end = datetime.now(UTC) + timedelta(minutes=1)
    with client.app.state.sessions() as session:
        frame = build_current_frame(session, start, end)
        assert len(build_current_frame(session, start, end, pathway="copd")) == 0
        assert len(build_current_frame(session, start, end, organisation="974557746")) == 0
        assert len(build_current_frame(session, start, end, model_version="other")) == 0
        assert len(build_current_frame(session, end, end + timedelta(hours=1))) == 0
    assert len(frame) == 3
    assert list(frame.pathway) == ["heart-failure"] * 3
    stored = np.array([[np.nan if v is None else v for v in r.features] for r in rows])
    np.testing.assert_array_equal(frame.X, stored)
    assert np.isnan(frame.X[0, FEATURE_INDEX["spo2_pct_latest"]])  # not measured yet
    np.testing.assert_array_equal(frame.raw["spo2"], frame.X[:, FEATURE_INDEX["spo2_pct_latest"]])
    np.testing.assert_array_equal(frame.raw["weight"], [81.5, 81.5, 81.5])  # from the readings
    np.testing.assert_array_equal(frame.probability, [r.probability for r in rows])
    assert list(frame.scored_at) == [
        int(r.created_at.replace(tzinfo=UTC).timestamp()) for r in rows
    ]
    assert np.isnan(frame.outcome).all()  # nothing recorded yet: unknown, never 0


def test_outcome_labels_use_the_72_hour_horizon(client: Any, auth: Any) -> None:
    from service.db.engine import transaction
    from service.domain.monitoring import OUTCOME_HORIZON_S, build_current_frame

    patient_id, rows = _scored_patient(client, auth)
    as_of = [r.as_of.replace(tzinfo=UTC) for r in rows]
    horizon = timedelta(seconds=OUTCOME_HORIZON_S)
    start = datetime.now(UTC) - timedelta(hours=1)
    end = datetime.now(UTC) + timedelta(minutes=1)
    with transaction(client.app.state.sessions) as session:
        # a deterioration exactly at the third assessment's horizon; a follow-up after all
        _outcome(session, patient_id, as_of[2] + horizon, True)
        _outcome(session, patient_id, as_of[2] + horizon + timedelta(hours=1), False)
    with client.app.state.sessions() as session:
        frame = build_current_frame(session, start, end)
    # Every as_of lies within 2 h of the others, so the event at as_of[2] + 72 h is inside the
    # horizon of the third only; the first two are 1-2 h short of it and end up negative.
    assert as_of[2] - as_of[0] == timedelta(hours=2)
    np.testing.assert_array_equal(frame.outcome, [0.0, 0.0, 1.0])


def test_outcome_is_unknown_without_follow_up_beyond_the_horizon(client: Any, auth: Any) -> None:
    from service.db.engine import transaction
    from service.domain.monitoring import build_current_frame

    patient_id, rows = _scored_patient(client, auth)
    as_of = rows[0].as_of.replace(tzinfo=UTC)
    with transaction(client.app.state.sessions) as session:
        _outcome(session, patient_id, as_of - timedelta(days=1), True)  # before: irrelevant
        _outcome(session, patient_id, as_of + timedelta(hours=73), False)  # known follow-up
    start = datetime.now(UTC) - timedelta(hours=1)
    end = datetime.now(UTC) + timedelta(minutes=1)
    with client.app.state.sessions() as session:
        frame = build_current_frame(session, start, end)
    # The follow-up 73 h after the first as_of covers the first's 72 h (negative); the second
    # and third (1 h and 2 h later) are not yet covered: unknown, never counted as negatives.
    np.testing.assert_array_equal(frame.outcome, [0.0, np.nan, np.nan])
    assert frame.has_outcomes
