"""Questionnaires sent to patients: the pathway's schedule (models/questionnaire_schedule.py)
creates one FHIR Task per due questionnaire, the way Helsenorge's form dispatch uses it, and the
outbox delivers it; a QuestionnaireResponse whose basedOn names the Task completes it; a Task
still open when its window closes is marked missed, and that change is sent too.

One pass (`QuestionnaireDispatch.run`) does the three steps in that order, so an answer that
arrived before the window closed is never counted as missed. Across replicas the unique key
(patient, questionnaire, opening time) makes a second replica's duplicate pass fail and roll back
rather than send a Task twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.identifiers import ORGNR_SYSTEM
from models.questionnaire_schedule import due_windows
from models.questionnaires import load_questionnaire
from service.db.tables import IngestedResource, OutboxEntry, Patient, QuestionnaireTask
from service.domain.pathways import PathwayService
from service.fhir.outputs import CODE_SYSTEM

TASK_IDENTIFIER_SYSTEM = f"{CODE_SYSTEM}/questionnaire-task"
OUTBOX_EVENT = "questionnaire-task"
REQUESTED, COMPLETED, MISSED = "requested", "completed", "missed"
# FHIR Task.status for each state; "missed" is a failed Task with that business status.
FHIR_STATUS = {REQUESTED: "requested", COMPLETED: "completed", MISSED: "failed"}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")


@dataclass
class DispatchResult:
    created: int = 0
    completed: int = 0
    missed: int = 0


def task_resource(task: QuestionnaireTask, patient: Patient) -> dict[str, Any]:
    """The Task Helsenorge receives: focus = the Questionnaire (canonical|version), for = the
    patient (by fødselsnummer: Helsenorge knows no ids of ours), requester = the unit."""
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": task.id,
        "identifier": [{"system": TASK_IDENTIFIER_SYSTEM, "value": task.id}],
        "status": FHIR_STATUS[task.status],
        "businessStatus": {"text": task.status},
        "intent": "order",
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]
        },
        "focus": {
            "reference": f"{task.questionnaire_url}|{task.questionnaire_version}",
            "display": task.questionnaire,
        },
        "for": {
            "reference": f"Patient/{patient.id}",
            "identifier": {"system": patient.identifier_system, "value": patient.identifier_value},
        },
        "requester": {
            "identifier": {"system": ORGNR_SYSTEM, "value": task.organisation},
            "display": f"unit {task.unit}",
        },
        "authoredOn": _iso(task.created_at),
        "lastModified": _iso(task.updated_at),
        "executionPeriod": {"start": _iso(task.opens_at), "end": _iso(task.closes_at)},
    }
    if task.status == MISSED:
        resource["statusReason"] = {"text": "not answered before the window closed"}
    if task.response_id:
        resource["output"] = [
            {
                "type": {"text": "QuestionnaireResponse"},
                "valueReference": {"reference": f"QuestionnaireResponse/{task.response_id}"},
            }
        ]
    return resource


def _bundle(task: QuestionnaireTask, patient: Patient) -> dict[str, Any]:
    resource = task_resource(task, patient)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "identifier": {"system": f"{CODE_SYSTEM}/outbox-message", "value": str(uuid.uuid4())},
        "meta": {"tag": [{"system": f"{CODE_SYSTEM}/outbox-event", "code": OUTBOX_EVENT}]},
        "entry": [
            {
                "resource": resource,
                "request": {
                    "method": "PUT",
                    "url": f"Task?identifier={TASK_IDENTIFIER_SYSTEM}|{task.id}",
                },
            }
        ],
    }


def _based_on_tasks(body: dict[str, Any]) -> Iterable[str]:
    for ref in body.get("basedOn") or []:
        reference = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(reference, str) and "Task/" in reference:
            yield reference.rsplit("Task/", 1)[1].split("/", 1)[0]
        identifier = ref.get("identifier") if isinstance(ref, dict) else None
        if isinstance(identifier, dict) and identifier.get("system") == TASK_IDENTIFIER_SYSTEM:
            value = identifier.get("value")
            if isinstance(value, str):
                yield value


class QuestionnaireDispatch:
    """Creates, completes and misses questionnaire Tasks; each change goes to the outbox."""

    def __init__(self, pathways: PathwayService, deliver: bool) -> None:
        self.pathways = pathways
        self.initial_state = "pending" if deliver else "recorded"

    def run(self, session: Session, now: datetime) -> DispatchResult:
        now = _utc(now)
        result = DispatchResult()
        result.completed = self.complete_answered(session, now)
        result.created = self.create_due(session, now)
        result.missed = self.mark_missed(session, now)
        return result

    def _send(
        self, session: Session, task: QuestionnaireTask, patient: Patient, now: datetime
    ) -> None:
        session.add(
            OutboxEntry(
                created_at=now,
                patient_id=patient.id,
                item_id=task.id,
                event=OUTBOX_EVENT,
                payload=_bundle(task, patient),
                state=self.initial_state,
                attempts=0,
                next_attempt_at=now,
            )
        )

    def create_due(self, session: Session, now: datetime) -> int:
        """A Task for every window that is open now and has none yet."""
        created = 0
        for patient in session.scalars(select(Patient).order_by(Patient.id)):
            in_force = self.pathways.in_force(
                session, patient.pathway_id, patient.organisation, patient.unit
            )
            for scheduled in in_force.doc.questionnaires:
                schedule = scheduled.schedule
                if schedule is None:
                    continue
                lookback = timedelta(hours=schedule.window_hours)
                windows = due_windows(
                    schedule, _utc(patient.created_at), now - lookback, now + timedelta(seconds=1)
                )
                for opens, closes in windows:
                    if closes <= now:
                        continue
                    exists = session.scalar(
                        select(QuestionnaireTask.id).where(
                            QuestionnaireTask.patient_id == patient.id,
                            QuestionnaireTask.questionnaire == scheduled.id,
                            QuestionnaireTask.opens_at == opens,
                        )
                    )
                    if exists:
                        continue
                    document = load_questionnaire(scheduled.id)
                    task = QuestionnaireTask(
                        id=str(uuid.uuid4()),
                        patient_id=patient.id,
                        questionnaire=scheduled.id,
                        questionnaire_url=str(document.get("url")),
                        questionnaire_version=str(document.get("version")),
                        pathway_id=patient.pathway_id,
                        pathway_version=in_force.version,
                        organisation=patient.organisation,
                        unit=patient.unit,
                        opens_at=opens,
                        closes_at=closes,
                        status=REQUESTED,
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(task)
                    session.flush()
                    self._send(session, task, patient, now)
                    created += 1
        return created

    def complete_answered(self, session: Session, now: datetime) -> int:
        """Open Tasks named by a received QuestionnaireResponse's basedOn become completed."""
        open_tasks = {
            t.id: t
            for t in session.scalars(
                select(QuestionnaireTask).where(QuestionnaireTask.status == REQUESTED)
            )
        }
        if not open_tasks:
            return 0
        patients = sorted({t.patient_id for t in open_tasks.values()})
        completed = 0
        responses = session.execute(
            select(IngestedResource.id, IngestedResource.patient_id, IngestedResource.body).where(
                IngestedResource.resource_type == "QuestionnaireResponse",
                IngestedResource.patient_id.in_(patients),
            )
        )
        for response_id, patient_id, body in responses:
            for task_id in set(_based_on_tasks(body or {})):
                task = open_tasks.get(task_id)
                # Only the patient's own Task: an answer cannot complete someone else's.
                if task is None or task.patient_id != patient_id or task.status != REQUESTED:
                    continue
                task.status, task.response_id, task.updated_at = COMPLETED, response_id, now
                patient = session.get(Patient, patient_id)
                assert patient is not None
                self._send(session, task, patient, now)
                completed += 1
        return completed

    def mark_missed(self, session: Session, now: datetime) -> int:
        missed = 0
        for task in session.scalars(
            select(QuestionnaireTask).where(
                QuestionnaireTask.status == REQUESTED, QuestionnaireTask.closes_at <= now
            )
        ):
            task.status, task.updated_at = MISSED, now
            patient = session.get(Patient, task.patient_id)
            assert patient is not None
            self._send(session, task, patient, now)
            missed += 1
        return missed


def missed_questionnaires(
    session: Session, patient_id: str, since: datetime, until: datetime
) -> int:
    """How many of the patient's questionnaires closed unanswered in [since, until)."""
    return len(
        session.scalars(
            select(QuestionnaireTask.id).where(
                QuestionnaireTask.patient_id == patient_id,
                QuestionnaireTask.status == MISSED,
                QuestionnaireTask.closes_at >= since,
                QuestionnaireTask.closes_at < until,
            )
        ).all()
    )
