"""The worklist listener that writes outbox entries inside the assessment's transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.tables import Assessment, IngestedResource, OutboxEntry, Patient, WorklistItem
from service.outbox.bundle import basis_reference, transaction_bundle

PENDING, DELIVERED, RECORDED = "pending", "delivered", "recorded"
# Refused by DIPS with a 4xx: set aside, listed on /api/v1/outbox, resent by hand once fixed.
DEAD_LETTER = "dead-letter"
STATES = (PENDING, DELIVERED, RECORDED, DEAD_LETTER)


class OutboxWriter:
    """ItemListener: one outbox entry per item event, committed with the assessment or not at all.

    With no endpoint configured the entries are stored as `recorded` (a record of what would have
    been sent) and the sender leaves them alone.
    """

    def __init__(self, deliver: bool) -> None:
        self.initial_state = PENDING if deliver else RECORDED

    def __call__(
        self, session: Session, item: WorklistItem, assessment: Assessment | None, event: str
    ) -> None:
        # Serialise outbox writes per patient (PostgreSQL; SQLite has one writer anyway), so the
        # entry ids of one patient follow commit order and the sender's "earliest first" is the
        # order the events happened in. NO KEY UPDATE does not conflict with the KEY SHARE locks
        # that inserting readings takes on the patient row.
        session.execute(
            select(Patient.id).where(Patient.id == item.patient_id).with_for_update(key_share=True)
        )
        patient = session.get(Patient, item.patient_id)
        if assessment is None:
            assessment = session.get(Assessment, item.assessment_id)
        assert patient is not None and assessment is not None
        received = (
            session.execute(
                select(
                    IngestedResource.id,
                    IngestedResource.resource_type,
                    IngestedResource.idempotency_key,
                ).where(IngestedResource.id.in_(assessment.basis))
            ).all()
            if assessment.basis
            else []
        )
        by_id = {r.id: r for r in received}
        basis = [
            basis_reference(rid, by_id[rid].resource_type, by_id[rid].idempotency_key)
            for rid in assessment.basis
            if rid in by_id
        ]
        now = datetime.now(UTC)
        session.add(
            OutboxEntry(
                created_at=now,
                patient_id=patient.id,
                item_id=item.id,
                event=event,
                payload=transaction_bundle(item, patient, assessment, event, basis),
                state=self.initial_state,
                attempts=0,
                next_attempt_at=now,
            )
        )
        session.flush()
