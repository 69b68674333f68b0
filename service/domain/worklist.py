"""The worklist: one active item per patient, moved by clinicians, updated by new assessments."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, case, false, func, or_, select
from sqlalchemy.orm import Session, defer

from service.db.tables import Assessment, Patient, WorklistEvent, WorklistItem
from service.db.unit_of_work import lock_patients
from service.domain.free_text import refuse_person_number
from service.domain.patients import target_of
from service.errors import Conflict, InvalidInput, LostRace, NotFound
from service.security import visibility
from service.security.principal import Principal, Role

ACTIVE_STATES = ("open", "acknowledged", "escalated")
# Allowed moves. Resolved is final: new data opens a new item instead.
TRANSITIONS: dict[str, dict[str, str]] = {
    "acknowledge": {"open": "acknowledged", "escalated": "acknowledged"},
    "escalate": {"open": "escalated", "acknowledged": "escalated"},
    "resolve": {"open": "resolved", "acknowledged": "resolved", "escalated": "resolved"},
}

# Whom an escalation may name besides a unit or a person: the roles that work the worklist.
RECIPIENT_ROLES = (Role.CLINICIAN.value, Role.ADMIN.value)
HPR_NUMBER = re.compile(r"[0-9]{1,9}")


def hpr_of(principal: Principal) -> str | None:
    """The HPR number in the caller's subject ("hpr-9144889", "9144889"), if it has one."""
    digits = "".join(ch for ch in principal.subject if ch in "0123456789")
    return str(int(digits)) if digits and len(digits) <= 9 else None


def named_keys(principal: Principal) -> set[str]:
    """Escalation recipients that name the caller beyond their own units: their HPR number, or
    one of their units. (A role recipient means that role where the item already is.)"""
    keys = {f"unit:{unit}" for unit in principal.units or ()}
    if (hpr := hpr_of(principal)) is not None:
        keys.add(f"hpr:{hpr}")
    return keys


def is_for(principal: Principal, escalated_to: str | None) -> bool:
    """Whether an escalation names the caller by unit or HPR number."""
    if not escalated_to:
        return False
    if escalated_to.startswith("unit:") and principal.units is None:
        return True  # every unit of the organisation
    return escalated_to in named_keys(principal)


def recipient_clause(principal: Principal) -> ColumnElement[bool]:
    """SQL for "escalated to the caller": by role inside what they see anyway, by one of their
    units or by HPR number anywhere in their organisations."""
    named: list[ColumnElement[bool]] = [
        WorklistItem.escalated_to.in_(sorted(named_keys(principal)))
    ]
    if principal.units is None:
        named.append(WorklistItem.escalated_to.like("unit:%"))
    return or_(
        (WorklistItem.escalated_to == f"role:{principal.role.value}")
        & visibility.patient_filter(principal),
        or_(false(), *named) & visibility.escalation_scope(principal),
    )


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
        last_data_at: datetime | None = None,
    ) -> WorklistItem | None:
        """Update the patient's active item, or open one when the level is alerting.

        ``level_rank`` orders urgency (0 = most urgent); the pathway's lowest level updates an
        existing item but opens none. ``preloaded``: ``item`` is the active item the caller
        already looked up (None: there is none), saving a query per patient in batch paths.
        ``last_data_at``: the newest reading's time (a scheduled re-score's as-of is the wall
        clock, which is not data).

        An item holds the most urgent level it reached until a clinician acknowledges it: new
        data can raise the level, a re-score cannot lower it (the card says "was red at ...;
        now yellow" from ``peak_*`` and the newest assessment).
        """
        now = assessment.created_at
        data_at = last_data_at if last_data_at is not None else assessment.as_of
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
                last_data_at=data_at,
                peak_at=assessment.as_of,
                peak_assessment_id=assessment.id,
                peak_reasons=reasons_of(assessment),
                peak_level_source=assessment.level_source,
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
        worse = level_rank < item.level_rank
        if worse or item.peak_assessment_id is None:
            item.hold_peak(assessment)
            item.peak_reasons = reasons_of(assessment)
        if level_rank <= item.level_rank:
            changed = item.level != assessment.level
            item.level, item.level_rank = assessment.level, level_rank
            action = "level-changed" if changed else "updated"
        else:
            # Only a person lowers a level: the held one stays, the card shows both.
            changed, action = False, "level-held"
        item.probability, item.assessment_id = assessment.probability, assessment.id
        item.updated_at, item.last_data_at = now, data_at
        if worse and item.state == "acknowledged":
            # A worse level after acknowledgement needs a fresh look.
            item.state = "open"
        session.add(
            WorklistEvent(
                item_id=item.id,
                action=action,
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
        self,
        session: Session,
        principal: Principal,
        item_id: str,
        action: str,
        note: str | None,
        expected_version: int | None = None,
        recipient: str | None = None,
    ) -> WorklistItem:
        """Acknowledge, escalate (to a recipient) or resolve; each is a history event.

        ``expected_version`` (If-Match) refuses a change to a stale copy.
        """
        if action not in TRANSITIONS:
            raise InvalidInput(f"unknown action '{action}'", location="action")
        refuse_person_number(note, "note")
        item = session.get(WorklistItem, item_id)
        patient = None if item is None else session.get(Patient, item.patient_id)
        if item is None or patient is None or not self._may_act(principal, item, patient):
            raise NotFound(f"worklist item {item_id} not found")
        # The patient's lock, as ingestion takes it: a clinician's action and arriving data
        # for the same patient follow one another; then read the item as it is now.
        lock_patients(session, [item.patient_id])
        session.refresh(item)
        if expected_version is not None and item.version != expected_version:
            raise _lost_race(session, item, f"the item changed since version {expected_version}")
        target = TRANSITIONS[action].get(item.state)
        if target is None:
            actor, _ = last_change(session, item)
            if item.state in TRANSITIONS[action].values() and actor != principal.subject:
                # Two clinicians pressed the same button: the second learns who was first.
                raise _lost_race(session, item, f"this item was already {item.state}")
            raise Conflict(f"cannot {action} an item that is {item.state}")
        if action == "resolve" and item.level_rank == 0 and not (note and note.strip()):
            # Handover: the next person must be able to read what was done about a red.
            raise InvalidInput(
                f"a {item.level} item is resolved only with a note saying what was done",
                location="note",
            )
        to = None
        if action == "escalate":
            to = self.parse_recipient(session, item, recipient)
        now = datetime.now(UTC)
        item.state, item.updated_at = target, now
        setattr(item, f"{target}_by", principal.subject)
        setattr(item, f"{target}_at", now)
        if to is not None:
            item.escalated_to = to
        session.add(
            WorklistEvent(
                item_id=item.id,
                action=action,
                actor=principal.subject,
                at=now,
                note=note,
                recipient=to,
                assessment_id=item.assessment_id,
            )
        )
        assessment = session.get(Assessment, item.assessment_id)
        lowered = False
        if action == "acknowledge" and assessment is not None:
            lowered = self._settle_level(item, assessment)
        session.flush()
        if lowered:
            self._notify(session, item, assessment, "level-changed")
        if target == "resolved":
            self._notify(session, item, assessment, "resolved")
        return item

    @staticmethod
    def _may_act(principal: Principal, item: WorklistItem, patient: Patient) -> bool:
        if visibility.may_change_patient(principal, patient):
            return True
        # An escalation reaches its named recipient in another unit of the organisation.
        return is_for(principal, item.escalated_to) and visibility.may_act_on_escalation(
            principal, item.organisation
        )

    @staticmethod
    def parse_recipient(session: Session, item: WorklistItem, raw: str | None) -> str:
        """``role:<role>``, ``unit:<unit of the organisation>`` or ``hpr:<HPR number>``."""
        text = (raw or "").strip()
        kind, _, value = text.partition(":")
        value = value.strip()
        if not text:
            raise InvalidInput(
                "an escalation names its recipient: role:<role>, unit:<unit> or hpr:<HPR number>",
                location="recipient",
            )
        if kind == "role" and value in RECIPIENT_ROLES:
            return f"role:{value}"
        if kind == "hpr" and HPR_NUMBER.fullmatch(value) and int(value) > 0:
            return f"hpr:{int(value)}"
        if kind == "unit" and value:
            known = session.scalar(
                select(Patient.unit)
                .where(Patient.organisation == item.organisation, Patient.unit == value)
                .limit(1)
            )
            if known is not None:
                return f"unit:{value}"
            raise InvalidInput(f"no unit '{value}' in this organisation", location="recipient")
        raise InvalidInput(
            "recipient must be role:<"
            + "|".join(RECIPIENT_ROLES)
            + ">, unit:<unit> or hpr:<HPR number, 1 to 9 digits>",
            location="recipient",
        )

    @staticmethod
    def level_counts(
        session: Session,
        principal: Principal,
        unit: str | None,
        states: tuple[str, ...] = ACTIVE_STATES,
        for_me: bool = False,
    ) -> dict[str, int]:
        """Items per level in what the caller's list shows (for the counts above the table)."""
        query = scoped(
            select(WorklistItem.level, func.count())
            .join(Patient, Patient.id == WorklistItem.patient_id)
            .where(WorklistItem.state.in_(states)),
            principal,
            unit,
            for_me,
        ).group_by(WorklistItem.level)
        return {str(level): int(n) for level, n in session.execute(query).all()}

    @staticmethod
    def history(session: Session, item_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """What people did with each item (who, when, note, recipient), oldest first."""
        out: dict[str, list[dict[str, Any]]] = {i: [] for i in item_ids}
        if not item_ids:
            return out
        rows = session.scalars(
            select(WorklistEvent)
            .where(WorklistEvent.item_id.in_(item_ids), WorklistEvent.actor != "system")
            .order_by(WorklistEvent.at, WorklistEvent.id)
        )
        for e in rows:
            out[e.item_id].append(
                {
                    "action": e.action,
                    "actor": e.actor,
                    "at": _aware(e.at),
                    "note": e.note,
                    "recipient": e.recipient,
                }
            )
        return out

    @staticmethod
    def _settle_level(item: WorklistItem, assessment: Assessment) -> bool:
        """A clinician has seen the item: it now holds the newest assessment's level.

        Returns True when that lowered the level (a held level is let go).
        """
        order = list((assessment.explanation or {}).get("levels") or [])
        if assessment.level == item.level or assessment.level not in order:
            return False
        item.level, item.level_rank = assessment.level, order.index(assessment.level)
        item.hold_peak(assessment)
        item.peak_reasons = reasons_of(assessment)
        return True

    def list_items(
        self,
        session: Session,
        principal: Principal,
        unit: str | None,
        states: tuple[str, ...] = ACTIVE_STATES,
        level: str | None = None,
        limit: int = 500,
        for_me: bool = False,
    ) -> list[tuple[WorklistItem, Patient, Assessment]]:
        """Most urgent level first; within a level, items no one has acknowledged yet, then
        the highest risk, then the longest waiting. ``for_me``: escalations to the caller."""
        query = (
            select(WorklistItem, Patient, Assessment)
            .join(Patient, Patient.id == WorklistItem.patient_id)
            .join(Assessment, Assessment.id == WorklistItem.assessment_id)
            # A list shows the explanation only: the feature snapshot and the basis (a
            # JSON list of resource ids, the largest column) are loaded when read.
            .options(defer(Assessment.features), defer(Assessment.basis))
            .where(WorklistItem.state.in_(states))
        )
        query = scoped(query, principal, unit, for_me)
        if level:
            query = query.where(WorklistItem.level == level)
        query = query.order_by(
            WorklistItem.level_rank,
            case((WorklistItem.state == "acknowledged", 1), else_=0),
            WorklistItem.probability.desc(),
            WorklistItem.opened_at,
        ).limit(limit)
        return [(row[0], row[1], row[2]) for row in session.execute(query).all()]


def scoped(query: Any, principal: Principal, unit: str | None, for_me: bool) -> Any:
    """The items a list shows the caller (the visibility rule), or (``for_me``) the
    escalations to them; one definition for the list and its counts. ``query`` joins Patient."""
    if for_me:
        query = query.where(WorklistItem.state == "escalated", recipient_clause(principal))
    else:
        # A patient merely shared with the caller's organisation (a grant) is not theirs to work.
        query = query.where(visibility.patient_filter(principal, shared=False))
    if unit:
        query = query.where(WorklistItem.unit == unit)
    return query


def last_change(session: Session, item: WorklistItem) -> tuple[str | None, str | None]:
    """(actor, action) of the item's latest event: who got there first."""
    event = session.scalar(
        select(WorklistEvent)
        .where(WorklistEvent.item_id == item.id)
        .order_by(WorklistEvent.id.desc())
        .limit(1)
    )
    return (event.actor, event.action) if event is not None else (None, None)


def _lost_race(session: Session, item: WorklistItem, reason: str) -> LostRace:
    patient = session.get(Patient, item.patient_id)
    assessment = session.get(Assessment, item.assessment_id)
    assert patient is not None and assessment is not None
    actor, action = last_change(session, item)
    who = f" by {actor}" if actor else ""
    return LostRace(
        f"{reason}{who}; reload and decide again",
        current=item_summary(item, patient, assessment),
        actor=actor,
        action=action,
    )


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def reasons_of(assessment: Assessment) -> list[dict[str, Any]]:
    """Why an assessment reached its level, in words (the rules that set it, else the model's
    top factors): kept with the item so a held level can still say why."""
    explanation = assessment.explanation or {}
    fired = [r for r in explanation.get("rules", []) if r.get("counts_for_triage", True)]
    at_level = [r for r in fired if r.get("level") == assessment.level] or fired
    chosen = at_level or explanation.get("top_factors", [])
    return [{"text_nb": r.get("text_nb", ""), "text_en": r.get("text_en", "")} for r in chosen[:3]]


def item_summary(
    item: WorklistItem,
    patient: Patient,
    assessment: Assessment,
    history: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    from models.identifiers import mask

    explanation = assessment.explanation or {}
    return {
        "id": item.id,
        "patient": {
            "id": patient.id,
            "display_name": patient.display_name,
            "display_identifier": mask(patient.identifier_value),
            "sex": patient.sex,
            "birth_date": str(patient.birth_date)[:10],
            "pathway": patient.pathway_id,
            "unit": patient.unit,
            "confidential_to_guardians": patient.confidential_to_guardians,
            "target_saturation": target_of(patient),
        },
        "state": item.state,
        "level": item.level,
        "level_source": item.level_source_with(assessment),
        "current_level_source": assessment.level_source,
        "probability": item.probability,
        "top_factors": explanation.get("top_factors", [])[:3],
        "rules_fired": explanation.get("rules", []),
        "last_data_at": _aware(item.last_data_at),
        # The newest assessment's level; below ``level`` while a higher one is held.
        "current_level": assessment.level,
        "held": assessment.level != item.level,
        "peak_at": item.peak_at and _aware(item.peak_at),
        "peak_reasons": item.peak_reasons or [],
        "opened_at": _aware(item.opened_at),
        "updated_at": _aware(item.updated_at),
        "acknowledged_by": item.acknowledged_by,
        "acknowledged_at": item.acknowledged_at and _aware(item.acknowledged_at),
        "escalated_by": item.escalated_by,
        "escalated_at": item.escalated_at and _aware(item.escalated_at),
        "resolved_by": item.resolved_by,
        "resolved_at": item.resolved_at and _aware(item.resolved_at),
        "escalated_to": item.escalated_to,
        "history": history or [],
        "assessment_id": assessment.id,
        "model_version": assessment.model_version,
        "version": item.version,  # the ETag: send it back as If-Match to change this item
    }
