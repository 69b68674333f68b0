"""Scoring: stored history → features → ONNX risk → rules → explanation → immutable assessment.

The reference time is the newest observation's effective time, not the wall clock, so a backlog
uploaded after two days offline is scored as it would have been live, and a replay of the same
history reproduces the same assessments.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.explain import explain
from models.features import (
    BASELINE_WINDOW_S,
    DAY_S,
    History,
    compute_features,
)
from models.recalibration import recalibrate
from service.db.tables import Assessment, Patient, Reading
from service.domain.pathways import PathwayService, TriageDecision
from service.domain.worklist import WorklistService
from service.model_registry import ModelRegistry
from service.observability import Metrics

# History a score needs: the 14-day baseline window plus the 7-day look-back of 3-day changes.
HISTORY_WINDOW_S = BASELINE_WINDOW_S + 7 * DAY_S


def build_assessment(
    patient: Patient,
    trigger: str,
    as_of_s: int,
    basis: set[str],
    x: np.ndarray,
    contributions: np.ndarray,
    intercept: float,
    logit: float,
    probability: float,
    context: dict[str, Any],
    decision: TriageDecision,
    model_name: str,
    model_version: str,
) -> Assessment:
    """The immutable record entry for one scored patient (single and batch paths alike)."""
    explanation = explain(
        x, contributions, intercept, logit, probability, context, decision.channels
    )
    return Assessment(
        id=str(uuid.uuid4()),
        patient_id=patient.id,
        created_at=datetime.now(UTC),
        as_of=datetime.fromtimestamp(as_of_s, UTC),
        trigger=trigger,
        model_name=model_name,
        model_version=model_version,
        pathway_id=patient.pathway_id,
        pathway_version=decision.pathway_version,
        rule_set_hash=decision.rule_set_hash,
        features=[None if np.isnan(v) else float(v) for v in x],
        probability=probability,
        level=decision.level,
        explanation={
            **explanation.as_dict(),
            "rules": decision.fired,
            "scores": decision.scores,
            "levels": decision.level_order,
            "triage": decision.evaluation,
        },
        basis=sorted(basis),
        organisation=patient.organisation,
    )


def birth_date_of(patient: Patient) -> date:
    return (
        patient.birth_date if isinstance(patient.birth_date, date) else (patient.birth_date.date())
    )


def age_at(birth: date, at_s: int) -> float:
    return (datetime.fromtimestamp(at_s, UTC).date() - birth).days / 365.25


def newest_reading_at(session: Session, patient_id: str, as_of: datetime) -> datetime:
    """The newest reading's time up to ``as_of``: when data last came, whatever scored it."""
    newest = session.scalar(
        select(func.max(Reading.effective_s)).where(
            Reading.patient_id == patient_id,
            Reading.effective_s <= int(as_of.timestamp()),
        )
    )
    return as_of if newest is None else datetime.fromtimestamp(int(newest), UTC)


@dataclass
class ScoringResult:
    assessment: Assessment
    item_id: str | None


class ScoringService:
    def __init__(
        self,
        models: ModelRegistry,
        pathways: PathwayService,
        worklist: WorklistService,
        metrics: Metrics,
    ) -> None:
        self.models = models
        self.pathways = pathways
        self.worklist = worklist
        self.metrics = metrics

    def load_readings(
        self, session: Session, patient_id: str, as_of_s: int | None
    ) -> tuple[int | None, list[Any]]:
        if as_of_s is None:
            as_of_s = session.scalar(
                select(func.max(Reading.effective_s)).where(Reading.patient_id == patient_id)
            )
            if as_of_s is None:
                return None, []
        rows = session.execute(
            select(Reading.name, Reading.value, Reading.effective_s, Reading.resource_id)
            .where(
                Reading.patient_id == patient_id,
                Reading.effective_s > as_of_s - HISTORY_WINDOW_S,
                Reading.effective_s <= as_of_s,
            )
            .order_by(Reading.effective_s, Reading.id)
        ).all()
        return as_of_s, list(rows)

    def assess(
        self,
        session: Session,
        patient: Patient,
        trigger: str,
        as_of_s: int | None = None,
        pathway_draft: Any = None,
    ) -> tuple[Assessment, TriageDecision] | None:
        """Compute an assessment without storing it (None if the patient has no data).

        ``pathway_draft`` evaluates a draft pathway instead of the one in force (dry run).
        """
        as_of_s, rows = self.load_readings(session, patient.id, as_of_s)
        if as_of_s is None:
            return None
        loaded = self.models.current()  # held for the whole request: a reload cannot swap it
        model = loaded.model
        age = age_at(birth_date_of(patient), as_of_s)
        history = History.from_rows([(0, r.name, r.effective_s, r.value) for r in rows])
        X, context = compute_features(history, np.array([0]), np.array([as_of_s]), np.array([age]))
        prediction = recalibrate(
            model.predict(X), model.manifest.extra if model.manifest else {}, [patient.pathway_id]
        )
        probability = float(prediction.probability[0])
        decision = self.pathways.evaluate(
            session, patient, rows, as_of_s, age, probability, pathway_draft, loaded.points
        )
        assessment = build_assessment(
            patient,
            trigger,
            as_of_s,
            {r.resource_id for r in rows},
            X[0],
            prediction.contributions[0],
            prediction.intercept_of(0),
            float(prediction.logit[0]),
            probability,
            context.row(0),
            decision,
            model.name,
            model.version,
        )
        return assessment, decision

    def score(
        self,
        session: Session,
        patient: Patient,
        trigger: str,
        as_of_s: int | None = None,
        supersedes_id: str | None = None,
    ) -> ScoringResult | None:
        """Score one patient as of its newest reading (or ``as_of_s``) and store the result.

        ``supersedes_id`` names the assessment this one replaces (its input was corrected or
        withdrawn); that assessment stays on record, marked superseded by this one.
        """
        computed = self.assess(session, patient, trigger, as_of_s)
        if computed is None:
            return None
        assessment, decision = computed
        assessment.supersedes_id = supersedes_id
        session.add(assessment)
        session.flush()
        item = self.worklist.apply_assessment(
            session,
            patient,
            assessment,
            decision.urgency_rank,
            decision.alerting,
            last_data_at=newest_reading_at(session, patient.id, assessment.as_of),
        )
        self.metrics.scorings.labels(patient.pathway_id, decision.level).inc()
        return ScoringResult(assessment, item.id if item else None)

    def rescore_cohort(
        self,
        session: Session,
        as_of_s: int,
        patient_ids: list[str] | None = None,
        trigger: str = "schedule",
    ) -> int:
        """Re-score many patients at once as of ``as_of_s`` (vectorised; one query, one ONNX call).

        The scheduled job passes the wall clock, so a patient who stopped sending data is seen
        (hours since last measurement, missed days); ingestion-triggered scoring never can.
        Returns the number of assessments stored.
        """
        query = select(Patient)
        if patient_ids is not None:
            query = query.where(Patient.id.in_(patient_ids))
        patients = list(session.scalars(query))
        if not patients:
            return 0
        index = {p.id: i for i, p in enumerate(patients)}
        reading_query = select(
            Reading.patient_id,
            Reading.name,
            Reading.value,
            Reading.effective_s,
            Reading.resource_id,
        ).where(Reading.effective_s > as_of_s - HISTORY_WINDOW_S, Reading.effective_s <= as_of_s)
        if patient_ids is not None:
            reading_query = reading_query.where(Reading.patient_id.in_(patient_ids))
        rows_by_patient: dict[int, list[Any]] = {}
        for r in session.execute(reading_query.order_by(Reading.effective_s, Reading.id)):
            if r.patient_id in index:
                rows_by_patient.setdefault(index[r.patient_id], []).append(r)
        scored = sorted(rows_by_patient)  # patients with data in the window
        if not scored:
            return 0
        history = History.from_rows(
            [(i, r.name, r.effective_s, r.value) for i in scored for r in rows_by_patient[i]]
        )
        ages = np.array([age_at(birth_date_of(patients[i]), as_of_s) for i in scored])
        X, context = compute_features(
            history, np.array(scored), np.full(len(scored), as_of_s), ages
        )
        loaded = self.models.current()
        model = loaded.model
        prediction = recalibrate(
            model.predict(X),
            model.manifest.extra if model.manifest else {},
            [patients[i].pathway_id for i in scored],
        )
        decisions = self.pathways.evaluate_many(
            session,
            [patients[i] for i in scored],
            [rows_by_patient[i] for i in scored],
            as_of_s,
            ages,
            prediction.probability,
            loaded.points,
        )
        active = self.worklist.active_items(session, [patients[i].id for i in scored])
        for k, i in enumerate(scored):
            patient, decision = patients[i], decisions[k]
            assessment = build_assessment(
                patient,
                trigger,
                as_of_s,
                {r.resource_id for r in rows_by_patient[i]},
                X[k],
                prediction.contributions[k],
                prediction.intercept_of(k),
                float(prediction.logit[k]),
                float(prediction.probability[k]),
                context.row(k),
                decision,
                model.name,
                model.version,
            )
            session.add(assessment)
            session.flush()
            self.worklist.apply_assessment(
                session,
                patient,
                assessment,
                decision.urgency_rank,
                decision.alerting,
                True,
                active.get(patient.id),
                datetime.fromtimestamp(max(r.effective_s for r in rows_by_patient[i]), UTC),
            )
            self.metrics.scorings.labels(patient.pathway_id, decision.level).inc()
        return len(scored)
