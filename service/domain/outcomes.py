"""Outcomes a site records for its patients: what happened, when it began, and how it is known.

They label past assessments for performance monitoring and for local recalibration
(`triage recalibrate`). Each is an immutable record entry; a correction is a new row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, get_args

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.tables import Assessment, Outcome, Patient
from service.domain.free_text import refuse_person_number
from service.errors import InvalidInput

# What a site can know happened. "none" is a follow-up (a call, a visit, the end of the pathway)
# that found no deterioration: it tells the labels that the patient was followed up to that time.
EventType = Literal[
    "deterioration",
    "hospital-admission",
    "emergency-visit",
    "unplanned-contact",
    "death",
    "none",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
NO_EVENT: Final = "none"

# Outcomes are recorded after the fact; a few minutes' grace allows for clock skew.
_CLOCK_SKEW = timedelta(minutes=5)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class RecordedOutcome:
    """An outcome as the recalibration reads it (no identifiers beyond the patient's row id)."""

    patient_id: str
    pathway: str
    organisation: str
    event_type: str
    onset_at: datetime

    @property
    def deteriorated(self) -> bool:
        return self.event_type != NO_EVENT


def outcome_dict(o: Outcome) -> dict[str, object]:
    onset = _utc(o.occurred_at)
    return {
        "id": o.id,
        "patient_id": o.patient_id,
        "event_type": o.event_type,
        "onset_at": onset,
        "occurred_at": onset,
        "deteriorated": o.deteriorated,
        "source": o.source,
        "organisation": o.organisation,
        "recorded_by": o.recorded_by,
        "recorded_at": _utc(o.recorded_at),
    }


class OutcomeService:
    """Records outcomes; the caller has already checked that the patient is visible."""

    @staticmethod
    def record(
        session: Session,
        patient: Patient,
        *,
        event_type: str,
        onset_at: datetime,
        source: str,
        recorded_by: str,
    ) -> dict[str, object]:
        refuse_person_number(source, "source")
        if event_type not in EVENT_TYPES:
            raise InvalidInput(
                f"unknown event_type '{event_type}' (one of: {', '.join(EVENT_TYPES)})",
                location="event_type",
            )
        now = datetime.now(UTC)
        if _utc(onset_at) > now + _CLOCK_SKEW:
            raise InvalidInput(
                "onset_at lies in the future: record an outcome once it is known",
                location="onset_at",
            )
        outcome = Outcome(
            id=str(uuid.uuid4()),
            patient_id=patient.id,
            organisation=patient.organisation,
            event_type=event_type,
            occurred_at=_utc(onset_at),
            deteriorated=event_type != NO_EVENT,
            source=source,
            recorded_by=recorded_by[:64],
            recorded_at=now,
        )
        session.add(outcome)
        session.flush()
        return outcome_dict(outcome)

    @staticmethod
    def recorded(
        session: Session, organisation: str | None = None, pathway: str | None = None
    ) -> list[RecordedOutcome]:
        """Every recorded outcome (optionally one organisation's or one pathway's), by onset."""
        query = select(
            Outcome.patient_id,
            Patient.pathway_id,
            Patient.organisation,
            Outcome.event_type,
            Outcome.occurred_at,
        ).join(Patient, Patient.id == Outcome.patient_id)
        if organisation is not None:
            query = query.where(Patient.organisation == organisation)
        if pathway is not None:
            query = query.where(Patient.pathway_id == pathway)
        rows = session.execute(query.order_by(Outcome.occurred_at)).all()
        return [
            RecordedOutcome(r[0], r[1], r[2], r[3] or "deterioration", _utc(r[4])) for r in rows
        ]


# An assessment is labelled positive when a deterioration began within this horizon after it
# (the model's label), negative when the patient was followed up beyond it without one.
LABEL_HORIZON_S = 72 * 3600


@dataclass
class LabelledRows:
    """One row per patient-day (the day's newest assessment), labelled from recorded outcomes."""

    X: np.ndarray  # [n, F] stored feature snapshots (NaN = missing)
    y: np.ndarray  # 1 = deterioration within 72 h
    pathway: np.ndarray
    patient: np.ndarray
    time_s: np.ndarray
    time_to_event_h: np.ndarray  # hours to the next onset (NaN if none)
    model_version: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def labelled_assessments(
    session: Session, organisation: str | None = None, pathway: str | None = None
) -> LabelledRows:
    """The organisation's assessments with known outcomes, as training rows for recalibration."""
    outcomes = OutcomeService.recorded(session, organisation, pathway)
    onsets: dict[str, list[float]] = {}
    followed: dict[str, float] = {}
    for o in outcomes:
        t = o.onset_at.timestamp()
        followed[o.patient_id] = max(followed.get(o.patient_id, 0.0), t)
        if o.deteriorated:
            onsets.setdefault(o.patient_id, []).append(t)
    query = select(
        Assessment.patient_id,
        Assessment.pathway_id,
        Assessment.as_of,
        Assessment.features,
        Assessment.model_version,
    ).where(Assessment.patient_id.in_(sorted(followed)))
    if organisation is not None:
        query = query.where(Assessment.organisation == organisation)
    if pathway is not None:
        query = query.where(Assessment.pathway_id == pathway)
    newest: dict[tuple[str, int], Any] = {}
    for r in session.execute(query.order_by(Assessment.as_of)):
        t = int(_utc(r.as_of).timestamp())
        newest[(r.patient_id, t // 86400)] = (r, t)
    rows_X, ys, pws, pats, times, ttes, versions = [], [], [], [], [], [], []
    for (pid, _), (r, t) in sorted(newest.items(), key=lambda kv: (kv[0][0], kv[1][1])):
        later = sorted(o for o in onsets.get(pid, []) if o >= t)
        if later and later[0] <= t + LABEL_HORIZON_S:
            label = 1
        elif followed.get(pid, 0.0) > t + LABEL_HORIZON_S:
            label = 0
        else:
            continue  # not yet known
        rows_X.append([np.nan if v is None else float(v) for v in r.features])
        ys.append(label)
        pws.append(r.pathway_id)
        pats.append(pid)
        times.append(t)
        ttes.append((later[0] - t) / 3600.0 if later else np.nan)
        versions.append(r.model_version or "")
    width = len(rows_X[0]) if rows_X else 0
    return LabelledRows(
        np.asarray(rows_X, dtype=np.float64).reshape(len(rows_X), width),
        np.asarray(ys, dtype=np.int64),
        np.asarray(pws, dtype=str),
        np.asarray(pats, dtype=str),
        np.asarray(times, dtype=np.int64),
        np.asarray(ttes, dtype=np.float64),
        np.asarray(versions, dtype=str),
    )
