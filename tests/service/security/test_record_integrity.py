"""Treatment-record integrity: record entries are never updated or deleted (API or ORM)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.db.tables import Assessment, PathwayVersion, PatientOverride, WorklistEvent
from service.security.policy import iter_routes
from service.security.record_guards import (
    IMMUTABLE_RECORDS,
    RecordImmutable,
    install_record_guards,
    record_maintenance,
)
from tests.helpers import enrol, observation, post_fhir

# Path fragments of record entries: no route may PUT, PATCH or DELETE on them.
RECORD_FRAGMENTS = (
    "assessment",
    "riskassessment",
    "detectedissue",
    "/versions",
    "override",
    "sign-off",
    "signoff",
    "audit",
)


def test_no_route_updates_or_deletes_record_entries(app: Any) -> None:
    offending = [
        f"{m} {r.path}"
        for r in iter_routes(app)
        for m in r.methods
        if m in ("PUT", "PATCH", "DELETE") and any(f in r.path.lower() for f in RECORD_FRAGMENTS)
    ]
    assert not offending, offending


def test_no_route_deletes_anything(app: Any) -> None:
    """Nothing in the treatment record is removed through the API (retention is a job)."""
    assert not [r.path for r in iter_routes(app) if "DELETE" in r.methods]


@pytest.fixture
def assessed(client: Any, auth: Any) -> dict[str, Any]:
    integration = auth("integration")
    p = enrol(client, integration)
    r = post_fhir(
        client,
        "/fhir/Observation",
        observation(p["id"], "spo2", 85, datetime.now(UTC), "ri-1"),
        integration,
    )
    assert r.status_code == 201, r.text
    return p


def _session(client: Any) -> Session:
    return Session(client.app.state.engine)


def test_orm_refuses_to_update_an_assessment(client: Any, assessed: dict[str, Any]) -> None:
    with _session(client) as session:
        assessment = session.scalars(select(Assessment)).first()
        assert assessment is not None
        assessment.level = "green"
        with pytest.raises(RecordImmutable, match="level"):
            session.flush()


def test_orm_refuses_to_delete_an_assessment(client: Any, assessed: dict[str, Any]) -> None:
    with _session(client) as session:
        session.delete(session.scalars(select(Assessment)).first())
        with pytest.raises(RecordImmutable):
            session.flush()


def test_orm_refuses_bulk_update_and_delete(client: Any, assessed: dict[str, Any]) -> None:
    with _session(client) as session:
        with pytest.raises(RecordImmutable):
            session.execute(update(Assessment).values(level="green"))
        with pytest.raises(RecordImmutable):
            session.execute(delete(WorklistEvent))


def test_unchanged_dirty_entry_is_not_an_update(client: Any, assessed: dict[str, Any]) -> None:
    with _session(client) as session:
        assessment = session.scalars(select(Assessment)).first()
        assert assessment is not None
        level, assessment_id = assessment.level, assessment.id
        assessment.level = assessment.level  # marks dirty, changes nothing
        session.flush()  # the guard lets it through: nothing was changed
        assert assessment in session and assessment.level == level
        session.commit()
    with _session(client) as session:
        stored = session.get(Assessment, assessment_id)
        assert stored is not None and stored.level == level


def test_override_may_only_be_revoked(client: Any, assessed: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    override = PatientOverride(
        id=str(uuid.uuid4()),
        patient_id=assessed["id"],
        body={"spo2": {"red_below": 86}},
        reason="known COPD baseline",
        author="565501872",
        created_at=now,
        expires_at=now + timedelta(days=30),
    )
    with _session(client) as session:
        session.add(override)
        session.commit()
        override.revoked = True  # the sanctioned change
        session.commit()
        override.reason = "rewritten"
        with pytest.raises(RecordImmutable, match="reason"):
            session.flush()
        session.rollback()
        override.revoked = False
        with pytest.raises(RecordImmutable):
            session.flush()


def test_correction_is_a_new_entry(client: Any, assessed: dict[str, Any]) -> None:
    """The sanctioned way: a new row that supersedes the old one."""
    with _session(client) as session:
        old = session.scalars(select(Assessment)).first()
        assert old is not None
        data = {c.key: getattr(old, c.key) for c in Assessment.__table__.columns}
        data.update(id=str(uuid.uuid4()), supersedes_id=old.id, created_at=datetime.now(UTC))
        session.add(Assessment(**data))
        session.commit()
        assert session.scalar(select(Assessment).where(Assessment.supersedes_id == old.id))


def test_retention_job_may_delete_inside_record_maintenance(client: Any) -> None:
    with _session(client) as session:
        session.add(
            PathwayVersion(
                pathway_id="copd",
                version=99,
                body={},
                content_hash="x",
                author="a",
                reason="r",
                created_at=datetime.now(UTC),
            )
        )
        session.commit()
        row = session.scalars(select(PathwayVersion).where(PathwayVersion.version == 99)).one()
        # Outside record maintenance the same delete is refused ...
        session.delete(row)
        with pytest.raises(RecordImmutable):
            session.flush()
        session.rollback()
        row = session.scalars(select(PathwayVersion).where(PathwayVersion.version == 99)).one()
        # ... inside it, the retention job's delete goes through and the row is gone.
        with record_maintenance("retention: test"):
            session.delete(row)
            session.commit()
    with _session(client) as session:
        gone = session.scalars(select(PathwayVersion).where(PathwayVersion.version == 99)).all()
        assert gone == []


def test_guards_cover_the_record_tables() -> None:
    install_record_guards()
    names = {cls.__tablename__ for cls in IMMUTABLE_RECORDS}
    assert {
        "assessments",
        "pathway_versions",
        "patient_overrides",
        "drift_signoffs",
        "audit_log",
    } <= names
