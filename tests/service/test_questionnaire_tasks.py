"""Questionnaires sent to patients (issue 18): the pathway's schedule creates Tasks that reach a
FHIR receiver through the outbox; an answer whose basedOn names the Task completes it; a Task
past its window is marked missed and sent again."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from models.questionnaire_schedule import due_windows
from models.rules.schema import QuestionnaireSchedule
from service.db.tables import IngestedResource, OutboxEntry, Patient, QuestionnaireTask
from tests.fhir_r4 import validate_r4
from tests.helpers import FNR_ADULT, ORG
from tests.service.interop.conftest import free_port
from tests.service.interop.fhir_receiver import FhirReceiver

# Enrolled on a Tuesday afternoon (Oslo, winter time = UTC+1).
ENROLLED = datetime(2026, 1, 6, 14, 0, tzinfo=UTC)


def test_schedules_daily_weekly_and_days_after_enrolment() -> None:
    week = (ENROLLED, ENROLLED + timedelta(days=8))
    daily = due_windows(QuestionnaireSchedule(send_at="08:00"), ENROLLED, *week)
    # Every morning at 08:00 Oslo (07:00 UTC) after enrolment, with a 12-hour window.
    assert [o.isoformat() for o, _ in daily][:2] == [
        "2026-01-07T07:00:00+00:00",
        "2026-01-08T07:00:00+00:00",
    ]
    assert all(c - o == timedelta(hours=12) for o, c in daily)
    mondays = due_windows(QuestionnaireSchedule(weekdays=["monday"]), ENROLLED, *week)
    assert [o.date() for o, _ in mondays] == [date(2026, 1, 12)]
    post_op = QuestionnaireSchedule(days_after_enrolment=[2, 4, 7], send_at="10:00")
    days = due_windows(post_op, ENROLLED, *week)
    assert [o.date() for o, _ in days] == [date(2026, 1, 8), date(2026, 1, 10), date(2026, 1, 13)]
    # Summer time: 08:00 Oslo is 06:00 UTC.
    june = datetime(2026, 6, 1, tzinfo=UTC)
    (summer, _), *_ = due_windows(QuestionnaireSchedule(), june, june, june + timedelta(days=1))
    assert summer.hour == 6
    with pytest.raises(ValueError):
        QuestionnaireSchedule(weekdays=["monday"], days_after_enrolment=[1])
    with pytest.raises(ValueError):
        QuestionnaireSchedule(weekdays=["mandag"])  # type: ignore[list-item]


def _patient(session: Any, pid: str, fnr: str, pathway: str = "copd") -> Patient:
    patient = Patient(
        id=pid,
        identifier_system="urn:oid:2.16.578.1.12.4.1.4.1",
        identifier_value=fnr,
        birth_date=date(1965, 7, 15),
        sex="female",
        pathway_id=pathway,
        organisation=ORG,
        unit="lungs",
        confidential_to_guardians=False,
        created_at=ENROLLED,
        created_by="test",
        pathway_options={},
    )
    session.add(patient)
    return patient


def test_tasks_reach_the_receiver_and_answers_complete_them(database_url: str) -> None:
    from service.db.engine import make_engine, make_session_factory
    from service.domain.pathways import PathwayService
    from service.domain.questionnaire_tasks import QuestionnaireDispatch, missed_questionnaires
    from service.observability import Metrics
    from service.outbox.sender import OutboxSender
    from tests.helpers import migrate_test_database as migrate

    migrate(database_url)
    sessions = make_session_factory(make_engine(database_url))
    pathways = PathwayService()
    with sessions.begin() as s:
        pathways.seed(s)
        _patient(s, "p-answers", FNR_ADULT)
        _patient(s, "p-silent", "01010150083")
    dispatch = QuestionnaireDispatch(pathways, deliver=True)
    morning = datetime(2026, 1, 7, 7, 30, tzinfo=UTC)  # 08:30 Oslo: the window is open
    with sessions.begin() as s:
        assert dispatch.run(s, morning).created == 2
    with sessions.begin() as s:
        assert dispatch.run(s, morning + timedelta(minutes=5)).created == 0  # no duplicates
        tasks = {t.patient_id: t.id for t in s.query(QuestionnaireTask)}
        # The patient answers through Helsenorge; basedOn names the Task.
        s.add(
            IngestedResource(
                id="qr-1",
                resource_type="QuestionnaireResponse",
                idempotency_key="qr-1",
                content_hash="x",
                patient_id="p-answers",
                body={
                    "resourceType": "QuestionnaireResponse",
                    "status": "completed",
                    "basedOn": [{"reference": f"Task/{tasks['p-answers']}"}],
                },
                received_at=morning + timedelta(hours=1),
                received_by="helsenorge",
            )
        )
    evening = datetime(2026, 1, 7, 20, 0, tzinfo=UTC)  # after the 12-hour window
    with sessions.begin() as s:
        result = dispatch.run(s, evening)
    assert (result.completed, result.missed) == (1, 1)
    with sessions() as s:
        states = {t.patient_id: t.status for t in s.query(QuestionnaireTask)}
        assert states == {"p-answers": "completed", "p-silent": "missed"}
        assert missed_questionnaires(s, "p-silent", morning, evening + timedelta(hours=1)) == 1
        assert missed_questionnaires(s, "p-answers", morning, evening + timedelta(hours=1)) == 0
        payloads = [e.payload for e in s.query(OutboxEntry).order_by(OutboxEntry.id)]
    assert len(payloads) == 4  # two sent, one completed, one missed
    for bundle in payloads:
        validate_r4(bundle)

    receiver = FhirReceiver(free_port())
    receiver.start()

    async def drain() -> None:
        sender = OutboxSender(sessions, receiver.base_url, Metrics(), poll_s=0.01, batch=10)
        try:
            for _ in range(100):
                await sender.run_once()
                if len(receiver.arrivals) == 4:
                    return
        finally:
            await sender.aclose()

    try:
        asyncio.run(drain())
    finally:
        receiver.stop()
    assert receiver.errors == []
    final = {s.resource["for"]["identifier"]["value"]: s.resource for s in receiver.of_type("Task")}
    assert final[FNR_ADULT]["status"] == "completed"
    assert final["01010150083"]["status"] == "failed"
    assert final["01010150083"]["businessStatus"]["text"] == "missed"
    task = final[FNR_ADULT]
    assert task["focus"]["reference"].startswith(
        "https://triage.example.org/fhir/Questionnaire/copd-symptoms|"
    )
    assert task["requester"]["identifier"]["value"] == ORG
    assert task["executionPeriod"] == {
        "start": "2026-01-07T07:00:00Z",
        "end": "2026-01-07T19:00:00Z",
    }


def test_the_scheduled_job_runs_in_the_app(client: Any, app: Any) -> None:
    from service.db.tables import JobRun
    from service.jobs import default_background_jobs, dispatch_questionnaires

    dispatch_questionnaires(app)
    with app.state.sessions() as s:
        run = s.get(JobRun, "questionnaires")
        assert run is not None and run.finished_at is not None
    assert len(default_background_jobs(app.state.settings)) >= 1
