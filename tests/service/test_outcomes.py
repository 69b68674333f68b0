"""POST /api/v1/outcomes: a site records what happened (event type, onset, source) for a patient
it may see; immutable, audited; older bodies (deteriorated yes/no) still work; the migration fills
the new columns for rows recorded before it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from tests.helpers import ORG, enrol

OTHER_ORG = "974557746"
URL = "/api/v1/outcomes"


def _onset(days_ago: float = 1.0) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()


def _body(patient_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "patient_id": patient_id,
        "event_type": "hospital-admission",
        "onset_at": _onset(),
        "source": "dips-admission",
        **extra,
    }


@pytest.fixture
def patient(client: TestClient, auth: Callable[..., dict[str, str]]) -> dict[str, Any]:
    return enrol(client, auth("clinician", ORG))


def test_a_site_records_an_outcome_with_event_type_onset_and_source(
    client: TestClient, auth: Callable[..., dict[str, str]], patient: dict[str, Any], app: Any
) -> None:
    from service.db.tables import AuditEntry, Outcome
    from service.domain.outcomes import OutcomeService

    onset = datetime.now(UTC) - timedelta(hours=30)
    r = client.post(
        URL,
        json=_body(patient["id"], onset_at=onset.isoformat()),
        headers=auth("integration", ORG, subject="dips-prod"),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["event_type"] == "hospital-admission"
    assert body["deteriorated"] is True
    assert body["organisation"] == ORG
    assert body["recorded_by"] == "dips-prod"
    assert abs(datetime.fromisoformat(body["onset_at"]) - onset) < timedelta(seconds=1)
    follow_up = client.post(
        URL,
        json=_body(patient["id"], event_type="none", source="follow-up-call", onset_at=_onset(0)),
        headers=auth("clinician", ORG),
    )
    assert follow_up.status_code == 201, follow_up.text
    assert follow_up.json()["deteriorated"] is False

    with app.state.sessions() as session:
        rows = session.scalars(select(Outcome).order_by(Outcome.occurred_at)).all()
        assert [(o.event_type, o.deteriorated, o.organisation) for o in rows] == [
            ("hospital-admission", True, ORG),
            ("none", False, ORG),
        ]
        recorded = OutcomeService.recorded(session, organisation=ORG, pathway="copd")
        assert [(o.event_type, o.deteriorated, o.pathway) for o in recorded] == [
            ("hospital-admission", True, "copd"),
            ("none", False, "copd"),
        ]
        assert OutcomeService.recorded(session, organisation=OTHER_ORG) == []
    # Audited: who wrote, for which patient (the row id, never the fødselsnummer).
    assert app.state.audit.flush(10)
    with app.state.sessions() as session:
        audit = session.scalars(
            select(AuditEntry).where(AuditEntry.resource == f"POST {URL}")
        ).all()
    assert {(a.actor, a.action, a.patient_id, a.outcome) for a in audit} >= {
        ("dips-prod", "write", patient["id"], 201)
    }


def test_older_body_with_deteriorated_and_occurred_at_still_works(
    client: TestClient, auth: Callable[..., dict[str, str]], patient: dict[str, Any]
) -> None:
    r = client.post(
        URL,
        json={
            "patient_id": patient["id"],
            "deteriorated": False,
            "occurred_at": _onset(),
            "source": "follow-up-call",
        },
        headers=auth("clinician", ORG),
    )
    assert r.status_code == 201, r.text
    assert r.json()["event_type"] == "none"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_type": "felt-unwell"}, "event_type"),
        ({"event_type": None}, "event_type"),
        ({"event_type": "none", "deteriorated": True}, "deteriorated"),
        ({"onset_at": "2026-01-01T10:00:00"}, "onset_at"),  # no time zone
        ({"onset_at": "1900-01-01T10:00:00Z"}, "onset_at"),
        ({"source": ""}, "source"),
        ({"source": "x" * 65}, "source"),
        ({"patient_id": ""}, "patient_id"),
        ({"severity": "high"}, "severity"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    client: TestClient,
    auth: Callable[..., dict[str, str]],
    patient: dict[str, Any],
    change: dict[str, Any],
    field: str,
) -> None:
    body = {**_body(patient["id"]), **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = client.post(URL, json=body, headers=auth("clinician", ORG))
    assert r.status_code == 422, r.text
    assert field in r.text


def test_future_onset_is_refused(
    client: TestClient, auth: Callable[..., dict[str, str]], patient: dict[str, Any]
) -> None:
    r = client.post(
        URL, json=_body(patient["id"], onset_at=_onset(-2)), headers=auth("clinician", ORG)
    )
    assert r.status_code == 422 and "future" in r.text and "onset_at" in r.text


def test_only_what_the_caller_may_see(
    client: TestClient, auth: Callable[..., dict[str, str]], patient: dict[str, Any]
) -> None:
    # Another organisation, a clinician of another unit, an unknown patient: 404, nothing stored.
    for headers in (
        auth("clinician", OTHER_ORG),
        auth("integration", OTHER_ORG),
        auth("clinician", ORG, units=["heart"]),
    ):
        assert client.post(URL, json=_body(patient["id"]), headers=headers).status_code == 404
    assert client.post(URL, json=_body("nobody"), headers=auth("admin")).status_code == 404
    # Roles that do not record outcomes, and no token at all.
    for role in ("compliance", "ml-engineer"):
        assert client.post(URL, json=_body(patient["id"]), headers=auth(role)).status_code == 403
    assert client.post(URL, json=_body(patient["id"])).status_code == 401


def test_migration_fills_event_type_and_organisation_for_older_rows(tmp_path: Any) -> None:
    from alembic import command
    from alembic.config import Config

    from service.db.engine import MIGRATIONS_DIR

    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "0004_one_signoff_per_report")
    engine = create_engine(url)
    now = datetime(2026, 1, 2, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO patients (id, identifier_system, identifier_value, birth_date, sex, "
                "pathway_id, organisation, unit, confidential_to_guardians, pathway_options, "
                "created_at, created_by) VALUES ('p1', 's', '1', '1950-01-01', 'female', 'copd', "
                f"'{ORG}', 'lungs', 0, '{{}}', :now, 'test')"
            ),
            {"now": now},
        )
        for oid, deteriorated in (("o1", 1), ("o2", 0)):
            conn.execute(
                text(
                    "INSERT INTO outcomes (id, patient_id, occurred_at, deteriorated, source, "
                    "recorded_by, recorded_at) VALUES (:id, 'p1', :now, :d, 'x', 'test', :now)"
                ),
                {"id": oid, "d": deteriorated, "now": now},
            )
    command.upgrade(config, "0012_outcomes")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, event_type, organisation FROM outcomes ORDER BY id")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("o1", "deterioration", ORG), ("o2", "none", ORG)]
