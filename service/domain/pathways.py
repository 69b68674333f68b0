"""Pathways as versioned data: the store, per-patient overrides, and the triage decision.

Every published pathway is a new row (never an update); an assessment records the version and
content hash it used. The shipped pathways seed version 1 the first time a database sees them.
The rule engine itself lives in models.rules (pure logic shared with training's baselines).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import rules
from models.measurements import SYMPTOM_SCORE
from models.operating_points import ModelPoints
from models.rules.store import canonical_dict
from service.db.tables import PathwayVersion, Patient, PatientOverride
from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.security.principal import Principal, Role

SYSTEM_AUTHOR = "system"


@dataclass
class TriageDecision:
    level: str
    urgency_rank: int  # 0 = most urgent, for worklist ordering
    alerting: bool  # above the pathway's lowest level: puts the patient on the worklist
    pathway_version: int
    rule_set_hash: str
    channels: set[str]
    fired: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)
    level_order: list[str] = field(default_factory=list)  # most urgent first
    evaluation: dict[str, Any] = field(default_factory=dict)


class PathwayPolicy(Protocol):
    def known(self) -> set[str]: ...

    def evaluate(
        self,
        session: Session,
        patient: Patient,
        rows: list[Any],
        as_of_s: int,
        age_years: float,
        probability: float | None,
        draft: Any = None,
    ) -> TriageDecision: ...


def readings_from_rows(
    rows: list[Any],
    as_of_s: int,
    age_years: float,
    options: Mapping[str, bool],
    enrolled_s: int | None,
) -> rules.PatientReadings:
    """Stored readings (already canonical and range-checked at ingestion) as rule-engine series.

    Questionnaire items are stored as ``q:<questionnaire>:<linkId>``; the engine calls them
    ``q/<questionnaire>/<linkId>``. Categorical values are stored as the engine's codes.
    """
    series: dict[str, tuple[list[int], list[float]]] = {}
    for r in rows:
        name = r.name
        if name.startswith("q:"):
            _, questionnaire, item = name.split(":", 2)
            name = f"q/{questionnaire}/{item}"
        times, values = series.setdefault(name, ([], []))
        times.append(int(r.effective_s))
        values.append(float(r.value))
    return rules.PatientReadings(int(as_of_s), float(age_years), series, dict(options), enrolled_s)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def override_document(row: PatientOverride) -> dict[str, Any]:
    return {
        **row.body,
        "reason": row.reason,
        "author": row.author,
        "created_s": int(_aware(row.created_at).timestamp()),
        "expires_s": int(_aware(row.expires_at).timestamp()),
    }


class PathwayService:
    """The pathway store and the rule-engine triage policy."""

    def __init__(self) -> None:
        self._shipped = rules.load_shipped_pathways()
        self._cache: dict[str, tuple[int, rules.Pathway, str]] = {}
        # (pathway hash, model load) -> the pathway with its operating points resolved
        self._resolved: dict[tuple[str, str], tuple[rules.Pathway, list[str]]] = {}
        self._lock = threading.Lock()

    # ---- operating points ---------------------------------------------------------------

    def with_operating_points(
        self, doc: rules.Pathway, doc_hash: str | None, points: ModelPoints | None
    ) -> tuple[rules.Pathway, list[str]]:
        """The pathway whose named operating points carry the loaded model's thresholds.

        Cached per (pathway hash, model version): a model reload re-resolves every pathway.
        Returns the names the model lacks too; those levels cannot be raised by the model.
        """
        thresholds = doc.triage.model_thresholds
        if points is None or not any(isinstance(v, str) for v in thresholds.values()):
            return doc, []
        key = (doc_hash, points.load_key or points.model_version) if doc_hash else None
        if key is not None and key in self._resolved:
            return self._resolved[key]
        resolved, missing = points.resolve(doc.id, thresholds)
        entry = (doc.with_model_thresholds(resolved), missing)
        if key is not None:
            with self._lock:
                if len(self._resolved) > 256:
                    self._resolved.clear()
                self._resolved[key] = entry
        return entry

    def unresolved_operating_points(
        self, session: Session, points: ModelPoints
    ) -> dict[str, list[str]]:
        """Per pathway in force: the operating points it names that this model lacks."""
        out: dict[str, list[str]] = {}
        for pathway_id in sorted(self.known_in(session)):
            _, doc, doc_hash = self.current(session, pathway_id)
            _, missing = self.with_operating_points(doc, doc_hash, points)
            if missing:
                out[pathway_id] = missing
        return out

    # ---- store --------------------------------------------------------------------------

    def seed(self, session: Session) -> None:
        """Version 1 of each shipped pathway, for a database that has none of it yet."""
        have = set(session.scalars(select(PathwayVersion.pathway_id).distinct()))
        now = datetime.now(UTC)
        for pid, doc in self._shipped.items():
            if pid not in have:
                body = {**canonical_dict(doc), "version": 1}
                session.add(
                    PathwayVersion(
                        pathway_id=pid,
                        version=1,
                        body=body,
                        content_hash=rules.pathway_hash(doc),
                        author=SYSTEM_AUTHOR,
                        reason="shipped default",
                        created_at=now,
                    )
                )
        session.flush()

    def known(self) -> set[str]:
        return set(self._shipped) | {pid for pid in self._cache}

    def known_in(self, session: Session) -> set[str]:
        return set(session.scalars(select(PathwayVersion.pathway_id).distinct())) | set(
            self._shipped
        )

    def current(self, session: Session, pathway_id: str) -> tuple[int, rules.Pathway, str]:
        """(version, document, hash) in force; cached per version so scoring stays cheap."""
        latest = session.scalar(
            select(func.max(PathwayVersion.version)).where(PathwayVersion.pathway_id == pathway_id)
        )
        if latest is None:
            if pathway_id in self._shipped:
                doc = self._shipped[pathway_id]
                return 1, doc, rules.pathway_hash(doc)
            raise NotFound(f"pathway '{pathway_id}' not found")
        cached = self._cache.get(pathway_id)
        if cached and cached[0] == latest:
            return cached
        row = session.scalar(
            select(PathwayVersion).where(
                PathwayVersion.pathway_id == pathway_id, PathwayVersion.version == latest
            )
        )
        assert row is not None
        parsed = rules.as_document(row.body)
        assert isinstance(parsed, rules.Pathway)
        entry = (latest, parsed, row.content_hash)
        with self._lock:
            self._cache[pathway_id] = entry
        return entry

    def versions(self, session: Session, pathway_id: str) -> list[dict[str, Any]]:
        rows = list(
            session.scalars(
                select(PathwayVersion)
                .where(PathwayVersion.pathway_id == pathway_id)
                .order_by(PathwayVersion.version)
            )
        )
        if not rows:
            raise NotFound(f"pathway '{pathway_id}' not found")
        history: list[dict[str, Any]] = []
        previous: dict[str, Any] | None = None
        for row in rows:
            changes: list[Any] = (
                []
                if previous is None
                else [
                    c.__dict__ if not hasattr(c, "to_dict") else c.to_dict()
                    for c in rules.diff_pathways(previous, row.body)
                ]
            )
            history.append(
                {
                    "version": row.version,
                    "author": row.author,
                    "reason": row.reason,
                    "created_at": _aware(row.created_at),
                    "hash": row.content_hash,
                    "changes": changes,
                }
            )
            previous = row.body
        return list(reversed(history))

    @staticmethod
    def may_edit(principal: Principal, doc: rules.Pathway) -> bool:
        if principal.role is Role.ADMIN:
            return True
        if principal.role.value not in doc.editors.roles:
            return False
        units = doc.editors.units
        return not units or principal.units is None or bool(set(units) & set(principal.units))

    def validate(self, draft: Any) -> list[dict[str, str]]:
        if not isinstance(draft, dict):
            return [{"path": "", "message": "a pathway is a JSON object"}]
        return [p.to_dict() for p in rules.validate_pathway(draft)]

    def publish(
        self,
        session: Session,
        principal: Principal,
        pathway_id: str,
        draft: dict[str, Any],
        reason: str,
    ) -> dict[str, Any]:
        """Validate and store a new version; the one in force stays until this commits."""
        problems = self.validate(draft)
        if problems:
            raise InvalidInput(
                f"the draft has {len(problems)} problem(s); nothing was published",
                location=problems[0]["path"],
                problems=problems,
            )
        if draft.get("id") != pathway_id:
            raise InvalidInput("the draft's id must match the pathway in the URL", location="id")
        exists = pathway_id in self.known_in(session)
        if exists:
            version, current, current_hash = self.current(session, pathway_id)
            if not self.may_edit(principal, current):
                raise Forbidden(f"you are not among the editors of pathway '{pathway_id}'")
        else:
            version, current_hash = 0, ""
            if principal.role not in (Role.ADMIN, Role.CLINICIAN):
                raise Forbidden("only clinicians and administrators create pathways")
        doc = rules.as_document({**draft, "version": version + 1})
        new_hash = rules.pathway_hash(doc)
        if new_hash == current_hash:
            raise InvalidInput("the draft is identical to the version in force", location="")
        body = {**draft, "version": version + 1}
        session.add(
            PathwayVersion(
                pathway_id=pathway_id,
                version=version + 1,
                body=body,
                content_hash=new_hash,
                author=principal.subject,
                reason=reason,
                created_at=datetime.now(UTC),
            )
        )
        session.flush()
        return {"id": pathway_id, "version": version + 1, "hash": new_hash}

    # ---- per-patient overrides ------------------------------------------------------------

    def active_overrides(self, session: Session, patient_id: str) -> list[dict[str, Any]]:
        """Overrides not revoked; the engine itself skips those expired at the reference time."""
        rows = list(
            session.scalars(select(PatientOverride).where(PatientOverride.patient_id == patient_id))
        )
        revoked = {r.supersedes_id for r in rows if r.revoked}
        return [override_document(r) for r in rows if not r.revoked and r.id not in revoked]

    def revoke_override(
        self, session: Session, principal: Principal, patient_id: str, override_id: str
    ) -> PatientOverride:
        original = session.get(PatientOverride, override_id)
        if original is None or original.patient_id != patient_id or original.revoked:
            raise NotFound(f"override {override_id} not found")
        already = session.scalar(
            select(PatientOverride.id).where(
                PatientOverride.supersedes_id == override_id, PatientOverride.revoked.is_(True)
            )
        )
        if already:
            raise Conflict("this override was already revoked")
        now = datetime.now(UTC)
        row = PatientOverride(
            id=str(uuid.uuid4()),
            patient_id=patient_id,
            body=original.body,
            reason=f"revoked: {original.reason}",
            author=principal.subject,
            created_at=now,
            expires_at=now,
            supersedes_id=override_id,
            revoked=True,
        )
        session.add(row)
        session.flush()
        return row

    def add_override(
        self,
        session: Session,
        principal: Principal,
        patient: Patient,
        body: dict[str, Any],
        reason: str,
        expires_at: datetime,
    ) -> PatientOverride:
        now = datetime.now(UTC)
        if _aware(expires_at) <= now:
            raise InvalidInput("expires_at must be in the future", location="expires_at")
        _, doc, _ = self.current(session, patient.pathway_id)
        candidate = {
            **body,
            "reason": reason,
            "author": principal.subject,
            "created_s": int(now.timestamp()),
            "expires_s": int(expires_at.timestamp()),
        }
        problems = [
            p.to_dict() for p in rules.validate_override(doc, candidate, patient.pathway_options)
        ]
        if problems:
            raise InvalidInput(
                "the personal threshold is not valid for this pathway",
                location=problems[0]["path"],
                problems=problems,
            )
        row = PatientOverride(
            id=str(uuid.uuid4()),
            patient_id=patient.id,
            body=body,
            reason=reason,
            author=principal.subject,
            created_at=now,
            expires_at=expires_at,
        )
        session.add(row)
        session.flush()
        return row

    # ---- triage -----------------------------------------------------------------------------

    def evaluate(
        self,
        session: Session,
        patient: Patient,
        rows: list[Any],
        as_of_s: int,
        age_years: float,
        probability: float | None,
        draft: Any = None,
        points: ModelPoints | None = None,
    ) -> TriageDecision:
        """The triage decision for a patient's readings (``draft``: a dry run of a change)."""
        if draft is None:
            version, doc, doc_hash = self.current(session, patient.pathway_id)
        else:
            doc, version = draft, 0
            doc_hash = rules.pathway_hash(draft)
        named = doc
        doc, unresolved = self.with_operating_points(
            doc, doc_hash if draft is None else None, points
        )
        first_reading = min((int(r.effective_s) for r in rows), default=as_of_s)
        enrolled_s = min(int(_aware(patient.created_at).timestamp()), first_reading)
        readings = readings_from_rows(
            rows, as_of_s, age_years, patient.pathway_options or {}, enrolled_s
        )
        result = rules.evaluate(
            doc, readings, probability, self.active_overrides(session, patient.id)
        )
        return decision_from(result, doc, version, doc_hash, named, points, unresolved)

    def evaluate_many(
        self,
        session: Session,
        patients: list[Patient],
        rows: list[list[Any]],
        as_of_s: int,
        ages: Any,
        probabilities: Any,
        points: ModelPoints | None = None,
    ) -> list[TriageDecision]:
        """Decisions for many patients: one vectorised rule evaluation per pathway."""
        overrides: dict[str, list[PatientOverride]] = {}
        for row in session.scalars(
            select(PatientOverride).where(PatientOverride.patient_id.in_([p.id for p in patients]))
        ):
            overrides.setdefault(row.patient_id, []).append(row)
        active = {
            pid: [
                override_document(r)
                for r in rs
                if not r.revoked and r.id not in {x.supersedes_id for x in rs if x.revoked}
            ]
            for pid, rs in overrides.items()
        }
        decisions: list[TriageDecision | None] = [None] * len(patients)
        by_pathway: dict[str, list[int]] = {}
        for k, p in enumerate(patients):
            by_pathway.setdefault(p.pathway_id, []).append(k)
        for pathway_id, members in by_pathway.items():
            version, named, doc_hash = self.current(session, pathway_id)
            doc, unresolved = self.with_operating_points(named, doc_hash, points)
            batch = []
            for k in members:
                p = patients[k]
                first = min((int(r.effective_s) for r in rows[k]), default=as_of_s)
                enrolled = min(int(_aware(p.created_at).timestamp()), first)
                batch.append(
                    readings_from_rows(
                        rows[k], as_of_s, float(ages[k]), p.pathway_options or {}, enrolled
                    )
                )
            result = rules.evaluate_batch(
                doc,
                batch,
                [float(probabilities[k]) for k in members],
                {
                    j: active[patients[k].id]
                    for j, k in enumerate(members)
                    if patients[k].id in active
                },
            )
            for j, k in enumerate(members):
                decisions[k] = decision_from(
                    result.evaluation(j), doc, version, doc_hash, named, points, unresolved
                )
        return [d for d in decisions if d is not None]


def level_source(decided_by: str) -> str:
    """Where a level came from, in the words every output uses: rule | model | rule+model | none."""
    return {"rules": "rule", "model": "model", "rules+model": "rule+model"}.get(decided_by, "none")


def decision_from(
    result: rules.Evaluation,
    doc: rules.Pathway,
    version: int,
    doc_hash: str,
    named: rules.Pathway | None = None,
    points: ModelPoints | None = None,
    unresolved: list[str] | None = None,
) -> TriageDecision:
    levels = [level.id for level in doc.levels]  # least urgent first
    channels = {m.measurement for m in doc.measurements}
    if doc.questionnaires:
        channels.add(SYMPTOM_SCORE)
    return TriageDecision(
        level=result.level,
        urgency_rank=len(levels) - 1 - result.level_rank,
        alerting=result.level_rank > 0,
        pathway_version=version,
        rule_set_hash=doc_hash,
        channels=channels,
        fired=[f.to_dict() for f in result.fired],
        scores=dict(result.scores),
        level_order=list(reversed(levels)),
        evaluation={
            "decided_by": result.decided_by,
            "level_source": level_source(result.decided_by),
            "model_thresholds": {
                level: {"threshold": value, "operating_point": named_value}
                for level, value in doc.triage.model_thresholds.items()
                for named_value in [
                    (named or doc).triage.model_thresholds.get(level)
                    if isinstance((named or doc).triage.model_thresholds.get(level), str)
                    else None
                ]
            },
            "operating_points_unresolved": list(unresolved or []),
            "rule_level": result.rule_level,
            "model_level": result.model_level,
            "overrides_applied": list(result.overrides_applied),
            "missing": list(result.missing),
        },
    )
