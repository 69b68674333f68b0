"""The worklist: one active item per patient, moved by clinicians, updated by new assessments."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from service.db.tables import Assessment, Patient, WorklistEvent, WorklistItem
from service.errors import Conflict, InvalidInput, NotFound
from service.security.principal import Principal, Role

ACTIVE_STATES = ("open", "acknowledged", "escalated")
# Allowed moves. Resolved is final: new data opens a new item instead.
TRANSITIONS: dict[str, dict[str, str]] = {
    "acknowledge": {"open": "acknowledged", "escalated": "acknowledged"},
    "escalate": {"open": "escalated", "acknowledged": "escalated"},
    "resolve": {"open": "resolved", "acknowledged": "resolved", "escalated": "resolved"},
}

# Called inside the assessment's transaction when an item opens, changes level or is resolved
# (the DIPS outbox subscribes here).
ItemListener = Callable[[Session, WorklistItem, Assessment | None, str], None]


class WorklistService:
    def __init__(self) -> None:
        self.listeners: list[ItemListener] = []

    def _notify(
        self, session: Session, item: WorklistItem, assessment: Assessment | None, event: str
    ) -> None:
        for listener in self.listeners:
            listener(session, item, assessment, event)

    @staticmethod
    def active_items(session: Session, patient_ids: list[str]) -> dict[str, WorklistItem]:
        """Active items of many patients in one query (the batch re-scoring path)."""
        items = session.scalars(
            select(WorklistItem).where(
                WorklistItem.patient_id.in_(patient_ids), WorklistItem.state.in_(ACTIVE_STATES)
            )
        )
        return {item.patient_id: item for item in items}

    def apply_assessment(
        self,
        session: Session,
        patient: Patient,
        assessment: Assessment,
        level_rank: int,
        alerting: bool,
        preloaded: bool = False,
        item: WorklistItem | None = None,
    ) -> WorklistItem | None:
        """Update the patient's active item, or open one when the level is alerting.

        ``level_rank`` orders urgency (0 = most urgent); the pathway's lowest level updates an
        existing item but opens none. ``preloaded``: ``item`` is the active item the caller
        already looked up (None: there is none), saving a query per patient in batch paths.
        """
        now = assessment.created_at
        if not preloaded:
            item = session.scalar(
                select(WorklistItem).where(
                    WorklistItem.patient_id == patient.id, WorklistItem.state.in_(ACTIVE_STATES)
                )
            )
        if item is None:
            if not alerting:
                return None
            item = WorklistItem(
                id=str(uuid.uuid4()),
                patient_id=patient.id,
                organisation=patient.organisation,
                unit=patient.unit,
                state="open",
                level=assessment.level,
                level_rank=level_rank,
                probability=assessment.probability,
                assessment_id=assessment.id,
                opened_at=now,
                updated_at=now,
                last_data_at=assessment.as_of,
            )
            session.add(item)
            session.flush()  # no ORM relationship orders these inserts, so flush the item first
            session.add(
                WorklistEvent(
                    item_id=item.id,
                    action="opened",
                    actor="system",
                    at=now,
                    assessment_id=assessment.id,
                )
            )
            session.flush()
            self._notify(session, item, assessment, "opened")
            return item
        changed = item.level != assessment.level
        worse = level_rank < item.level_rank
        item.level, item.level_rank = assessment.level, level_rank
        item.probability, item.assessment_id = assessment.probability, assessment.id
        item.updated_at, item.last_data_at = now, max(_aware(item.last_data_at), assessment.as_of)
        if worse and item.state == "acknowledged":
            # A worse level after acknowledgement needs a fresh look.
            item.state = "open"
        session.add(
            WorklistEvent(
                item_id=item.id,
                action="level-changed" if changed else "updated",
                actor="system",
                at=now,
                assessment_id=assessment.id,
            )
        )
        session.flush()
        if changed:
            self._notify(session, item, assessment, "level-changed")
        return item

    def transition(
        self, session: Session, principal: Principal, item_id: str, action: str, note: str | None
    ) -> WorklistItem:
        if action not in TRANSITIONS:
            raise InvalidInput(f"unknown action '{action}'", location="action")
        item = session.get(WorklistItem, item_id)
        if item is None or not self._visible(principal, item):
            raise NotFound(f"worklist item {item_id} not found")
        target = TRANSITIONS[action].get(item.state)
        if target is None:
            raise Conflict(f"cannot {action} an item that is {item.state}")
        now = datetime.now(UTC)
        item.state, item.updated_at = target, now
        setattr(item, f"{target}_by", principal.subject)
        setattr(item, f"{target}_at", now)
        session.add(
            WorklistEvent(
                item_id=item.id, action=action, actor=principal.subject, at=now, note=note
            )
        )
        session.flush()
        if target == "resolved":
            assessment = session.get(Assessment, item.assessment_id)
            self._notify(session, item, assessment, "resolved")
        return item

    @staticmethod
    def _visible(principal: Principal, item: WorklistItem) -> bool:
        return principal.role is Role.ADMIN or principal.may_see_unit(item.organisation, item.unit)

    def list_items(
        self,
        session: Session,
        principal: Principal,
        unit: str | None,
        states: tuple[str, ...] = ACTIVE_STATES,
        level: str | None = None,
        limit: int = 500,
    ) -> list[tuple[WorklistItem, Patient, Assessment]]:
        query = (
            select(WorklistItem, Patient, Assessment)
            .join(Patient, Patient.id == WorklistItem.patient_id)
            .join(Assessment, Assessment.id == WorklistItem.assessment_id)
            # A list shows the explanation only: the feature snapshot and the basis (a
            # JSON list of resource ids, the largest column) are loaded when read.
            .options(defer(Assessment.features), defer(Assessment.basis))
            .where(WorklistItem.state.in_(states))
        )
        if principal.role is not Role.ADMIN:
            query = query.where(WorklistItem.organisation == principal.organisation)
            if principal.units is not None:
                query = query.where(WorklistItem.unit.in_(principal.units))
        if unit:
            query = query.where(WorklistItem.unit == unit)
        if level:
            query = query.where(WorklistItem.level == level)
        # Most urgent level first, then highest risk, then longest waiting.
        query = query.order_by(
            WorklistItem.level_rank, WorklistItem.probability.desc(), WorklistItem.opened_at
        ).limit(limit)
        return [(row[0], row[1], row[2]) for row in session.execute(query).all()]


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def item_summary(item: WorklistItem, patient: Patient, assessment: Assessment) -> dict[str, Any]:
    from service.identifiers import mask

    explanation = assessment.explanation or {}
    return {
        "id": item.id,
        "patient": {
            "id": patient.id,
            "display_identifier": mask(patient.identifier_value),
            "sex": patient.sex,
            "birth_date": str(patient.birth_date)[:10],
            "pathway": patient.pathway_id,
            "unit": patient.unit,
            "confidential_to_guardians": patient.confidential_to_guardians,
        },
        "state": item.state,
        "level": item.level,
        "level_source": assessment.level_source,
        "probability": item.probability,
        "top_factors": explanation.get("top_factors", [])[:3],
        "rules_fired": explanation.get("rules", []),
        "last_data_at": _aware(item.last_data_at),
        "opened_at": _aware(item.opened_at),
        "updated_at": _aware(item.updated_at),
        "acknowledged_by": item.acknowledged_by,
        "acknowledged_at": item.acknowledged_at and _aware(item.acknowledged_at),
        "escalated_by": item.escalated_by,
        "escalated_at": item.escalated_at and _aware(item.escalated_at),
        "resolved_by": item.resolved_by,
        "resolved_at": item.resolved_at and _aware(item.resolved_at),
        "assessment_id": assessment.id,
        "model_version": assessment.model_version,
    }
