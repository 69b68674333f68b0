"""Pathways as versioned data: the store, per-patient overrides, and the triage decision.

Every published pathway is a new row (never an update); an assessment records the version and
content hash it used. The shipped pathways seed version 1 of the regional templates the first time
a database sees them. Organisations (and units) publish their own versions; a patient is scored
by the one ``in_force`` for its organisation and unit. A change that can alter a level waits for
a second clinician's approval (four-eyes), recorded as its own insert-only row.
The rule engine itself lives in models.rules (pure logic shared with training's baselines).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import rules
from models.measurements import SYMPTOM_SCORE
from models.operating_points import ModelPoints
from models.rules.store import canonical_dict
from service.db.tables import PathwayVersion, PathwayVersionDecision, Patient, PatientOverride
from service.db.unit_of_work import PATHWAY_LOCKS, lock_all
from service.domain.free_text import refuse_person_number, refuse_person_number_in_document
from service.errors import Conflict, Forbidden, InvalidInput, LostRace, NotFound
from service.security.principal import Principal, Role
from service.security.visibility import (
    may_approve_pathway,
    may_edit_pathway,
    may_read_pathway_scope,
)

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


@dataclass(frozen=True)
class InForce:
    """The version that scores a scope's patients, and the scope it was found in."""

    version: int
    doc: rules.Pathway
    hash: str
    organisation: str | None  # None: the regional template
    unit: str | None


# A version proposed in a scope where it needs approval and none was given yet.
PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
PUBLISHED = "published"  # took effect when published (wording only, or before four-eyes)
VERSION_STATUSES = (PUBLISHED, PENDING, APPROVED, REJECTED)
_KEEP_SCOPE = object()


def version_status(needs_approval: bool, decision: str | None) -> str:
    if not needs_approval:
        return PUBLISHED
    return decision or PENDING


def _scope_rank(
    row_organisation: str | None, row_unit: str | None, organisation: str | None, unit: str | None
) -> int | None:
    """0: the unit's own version, 1: the organisation's, 2: the regional template; None: other."""
    if row_organisation is None:
        return 2 if row_unit is None else None
    if row_organisation != organisation:
        return None
    if row_unit is None:
        return 1
    return 0 if unit is not None and row_unit == unit else None


class PathwayService:
    """The pathway store (templates, organisations' versions, four-eyes) and the triage policy."""

    def __init__(self) -> None:
        self._shipped = rules.load_shipped_pathways()
        self._docs: dict[tuple[str, int], tuple[rules.Pathway, str]] = {}
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
        """Version 1 of each shipped pathway as a regional template, for a database without it."""
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
                        organisation=None,
                        unit=None,
                        needs_approval=False,
                    )
                )
        session.flush()

    def known(self) -> set[str]:
        return set(self._shipped) | {pid for pid, _ in self._docs}

    def _scope_rows(
        self, session: Session, pathway_ids: list[str] | None, organisation: str | None
    ) -> list[Any]:
        """Light rows (no body) of the templates and of ``organisation``, with their decision."""
        query = select(
            PathwayVersion.id,
            PathwayVersion.pathway_id,
            PathwayVersion.version,
            PathwayVersion.organisation,
            PathwayVersion.unit,
            PathwayVersion.needs_approval,
            PathwayVersion.author,
            PathwayVersion.base_version,
            PathwayVersionDecision.decision,
        ).outerjoin(
            PathwayVersionDecision, PathwayVersionDecision.pathway_version_id == PathwayVersion.id
        )
        if pathway_ids is not None:
            query = query.where(PathwayVersion.pathway_id.in_(pathway_ids))
        scope: ColumnElement[bool] = PathwayVersion.organisation.is_(None)
        if organisation is not None:
            scope = or_(scope, PathwayVersion.organisation == organisation)
        return list(session.execute(query.where(scope)))

    @staticmethod
    def _pick(rows: list[Any], organisation: str | None, unit: str | None) -> Any | None:
        """The row in force for (organisation, unit): the nearest scope's newest effective one."""
        best: tuple[int, int] | None = None
        chosen = None
        for r in rows:
            if version_status(bool(r.needs_approval), r.decision) not in (PUBLISHED, APPROVED):
                continue
            rank = _scope_rank(r.organisation, r.unit, organisation, unit)
            if rank is None:
                continue
            key = (-rank, int(r.version))
            if best is None or key > best:
                best, chosen = key, r
        return chosen

    def _document(self, session: Session, pathway_id: str, version: int) -> tuple[Any, str]:
        """Parsed document and hash of one stored version, cached (versions never change)."""
        key = (pathway_id, version)
        cached = self._docs.get(key)
        if cached is not None:
            return cached
        row = session.execute(
            select(PathwayVersion.body, PathwayVersion.content_hash).where(
                PathwayVersion.pathway_id == pathway_id, PathwayVersion.version == version
            )
        ).one()
        parsed = rules.as_document(row.body)
        assert isinstance(parsed, rules.Pathway)
        entry = (parsed, str(row.content_hash))
        with self._lock:
            self._docs[key] = entry
        return entry

    def known_in(self, session: Session, organisation: str | None = None) -> set[str]:
        """Pathways a patient of ``organisation`` can be on (None: the regional templates)."""
        rows = self._scope_rows(session, None, organisation)
        ids = {
            r.pathway_id
            for r in rows
            if version_status(bool(r.needs_approval), r.decision) in (PUBLISHED, APPROVED)
        }
        stored = {r.pathway_id for r in rows}
        return ids | (set(self._shipped) - stored)

    def in_force(
        self,
        session: Session,
        pathway_id: str,
        organisation: str | None = None,
        unit: str | None = None,
    ) -> InForce:
        """The one resolution: the unit's version, else the organisation's, else the template.

        Scoring, the dry run, the web pages and the API all ask this. A pending (unapproved)
        version is never returned.
        """
        row = self._pick(self._scope_rows(session, [pathway_id], organisation), organisation, unit)
        if row is None:
            if pathway_id in self._shipped and not session.scalar(
                select(PathwayVersion.id).where(PathwayVersion.pathway_id == pathway_id).limit(1)
            ):
                doc = self._shipped[pathway_id]
                return InForce(1, doc, rules.pathway_hash(doc), None, None)
            raise NotFound(f"pathway '{pathway_id}' not found")
        doc, doc_hash = self._document(session, pathway_id, int(row.version))
        return InForce(int(row.version), doc, doc_hash, row.organisation, row.unit)

    def for_patient(self, session: Session, patient: Patient) -> InForce:
        """The version that scores this patient: resolved within its organisation and unit."""
        return self.in_force(session, patient.pathway_id, patient.organisation, patient.unit)

    def current(
        self,
        session: Session,
        pathway_id: str,
        organisation: str | None = None,
        unit: str | None = None,
    ) -> tuple[int, rules.Pathway, str]:
        """(version, document, hash) in force for a scope; see ``in_force``."""
        found = self.in_force(session, pathway_id, organisation, unit)
        return found.version, found.doc, found.hash

    @staticmethod
    def reading_scope(principal: Principal) -> str | None:
        """The organisation whose versions a caller reads by default (admin: the templates)."""
        return None if principal.role is Role.ADMIN else principal.organisation

    def versions(
        self, session: Session, principal: Principal, pathway_id: str
    ) -> list[dict[str, Any]]:
        """History the caller may read, newest first: scope, author, approver, reason, diff."""
        rows = [
            r
            for r in session.scalars(
                select(PathwayVersion)
                .where(PathwayVersion.pathway_id == pathway_id)
                .order_by(PathwayVersion.version)
            )
            if may_read_pathway_scope(principal, r.organisation)
        ]
        if not rows:
            raise NotFound(f"pathway '{pathway_id}' not found")
        decisions = {
            d.pathway_version_id: d
            for d in session.scalars(
                select(PathwayVersionDecision).where(
                    PathwayVersionDecision.pathway_id == pathway_id
                )
            )
        }
        bodies = {r.version: r.body for r in rows}
        previous_in_scope: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        history: list[dict[str, Any]] = []
        for row in rows:
            scope = (row.organisation, row.unit)
            decision = decisions.get(row.id)
            status = version_status(row.needs_approval, decision.decision if decision else None)
            base = bodies.get(row.base_version) if row.base_version else None
            if base is None:
                base = previous_in_scope.get(scope)
            changes: list[Any] = (
                []
                if base is None
                else [
                    c.to_dict()
                    for c in rules.diff_pathways(base, row.body)
                    if c.path != "/version"  # every version has its own number
                ]
            )
            if status in (PUBLISHED, APPROVED):
                previous_in_scope[scope] = row.body
            history.append(
                {
                    "version": row.version,
                    "organisation": row.organisation,
                    "unit": row.unit,
                    "status": status,
                    "needs_approval": row.needs_approval,
                    "base_version": row.base_version,
                    "author": row.author,
                    "reason": row.reason,
                    "created_at": _aware(row.created_at),
                    "decided_by": decision.decided_by if decision else None,
                    "decision_reason": decision.reason if decision else None,
                    "decided_at": _aware(decision.decided_at) if decision else None,
                    "hash": row.content_hash,
                    "changes": changes,
                }
            )
        # "In force in its own scope" by the same pick as in_force, over that scope's rows alone.
        light = [
            SimpleNamespace(
                version=e["version"],
                organisation=e["organisation"],
                unit=e["unit"],
                needs_approval=e["needs_approval"],
                decision=None if e["status"] in (PUBLISHED, PENDING) else e["status"],
            )
            for e in history
        ]
        for entry in history:
            scope = (entry["organisation"], entry["unit"])
            same_scope = [r for r in light if (r.organisation, r.unit) == scope]
            chosen = self._pick(same_scope, *scope)
            entry["in_force"] = chosen is not None and chosen.version == entry["version"]
        return list(reversed(history))

    def version_row(
        self, session: Session, principal: Principal, pathway_id: str, version: int
    ) -> PathwayVersion:
        """One stored version the caller may read (404 otherwise, as if it did not exist)."""
        row = session.scalar(
            select(PathwayVersion).where(
                PathwayVersion.pathway_id == pathway_id, PathwayVersion.version == version
            )
        )
        if row is None or not may_read_pathway_scope(principal, row.organisation):
            raise NotFound(f"pathway '{pathway_id}' version {version} not found")
        return row

    def decision_of(self, session: Session, row: PathwayVersion) -> PathwayVersionDecision | None:
        return session.scalar(
            select(PathwayVersionDecision).where(
                PathwayVersionDecision.pathway_version_id == row.id
            )
        )

    def pending(
        self, session: Session, pathway_id: str, organisation: str | None, unit: str | None
    ) -> PathwayVersion | None:
        """The proposal awaiting approval in exactly this scope (at most one)."""
        rows = self._scope_rows(session, [pathway_id], organisation)
        waiting = [
            r
            for r in rows
            if r.organisation == organisation
            and r.unit == unit
            and version_status(bool(r.needs_approval), r.decision) == PENDING
        ]
        if not waiting:
            return None
        return session.get(PathwayVersion, max(waiting, key=lambda r: r.version).id)

    @staticmethod
    def publishing_scope(
        principal: Principal, organisation: Any = _KEEP_SCOPE, unit: str | None = None
    ) -> tuple[str | None, str | None]:
        """Where a publish lands: given, else the clinician's organisation (admin: template)."""
        if organisation is _KEEP_SCOPE:
            organisation = None if principal.role is Role.ADMIN else principal.organisation
        if organisation is None and unit is not None:
            raise InvalidInput("a regional template has no unit", location="unit")
        if organisation is None and principal.role is not Role.ADMIN:
            raise Forbidden("the regional template library is maintained by administrators")
        if (
            organisation is not None
            and principal.role is not Role.ADMIN
            and organisation not in principal.organisations
        ):
            raise Forbidden("you may only change pathways of your own organisation")
        return organisation, unit

    def may_edit_in(
        self,
        session: Session,
        principal: Principal,
        pathway_id: str,
        organisation: str | None,
        unit: str | None,
    ) -> bool:
        """May the caller publish in this scope, under the editors of the version in force?"""
        try:
            base = self.in_force(session, pathway_id, organisation, unit)
        except NotFound:
            return principal.role in (Role.ADMIN, Role.CLINICIAN)
        return may_edit_pathway(principal, organisation, unit, base.doc.editors)

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
        organisation: Any = _KEEP_SCOPE,
        unit: str | None = None,
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """Store a new version in a scope: in force at once for wording, pending otherwise.

        A change to thresholds, levels or anything else that can change a level is stored as a
        proposal and scores no one until a second clinician approves it (``decide``).
        ``expected_version`` (If-Match): the version in force the author edited; if another is
        in force now, someone else published first and nothing is stored.
        """
        refuse_person_number(reason, "reason")
        refuse_person_number_in_document(draft, "pathway")
        organisation, unit = self.publishing_scope(principal, organisation, unit)
        problems = self.validate(draft)
        if problems:
            raise InvalidInput(
                f"the draft has {len(problems)} problem(s); nothing was published",
                location=problems[0]["path"],
                problems=problems,
            )
        if draft.get("id") != pathway_id:
            raise InvalidInput("the draft's id must match the pathway in the URL", location="id")
        # Concurrent publishes of one pathway (any replica) take turns: what is in force and
        # the next version number are read after the lock, so two never claim the same one.
        lock_all(session, PATHWAY_LOCKS, [pathway_id])
        try:
            base: InForce | None = self.in_force(session, pathway_id, organisation, unit)
        except NotFound:
            base = None
        in_force_version = base.version if base is not None else 0
        if expected_version is not None and expected_version != in_force_version:
            row = session.scalar(
                select(PathwayVersion).where(
                    PathwayVersion.pathway_id == pathway_id,
                    PathwayVersion.version == in_force_version,
                )
            )
            raise LostRace(
                f"version {in_force_version} of '{pathway_id}' is in force here, not "
                f"{expected_version}" + (f": {row.author} published it" if row else ""),
                current={
                    "id": pathway_id,
                    "version": in_force_version,
                    "hash": base.hash if base is not None else None,
                },
                actor=row.author if row is not None else None,
                action="publish",
            )
        doc = rules.as_document(draft)
        assert isinstance(doc, rules.Pathway)
        if unit is not None and doc.editors.units and unit not in doc.editors.units:
            # The unit's own clinicians would be locked out of the unit's own version.
            raise InvalidInput(
                f"editors.units must include '{unit}' (or be empty) for a version of that unit",
                location="/editors/units",
            )
        editors = base.doc.editors if base is not None else doc.editors
        if not may_edit_pathway(principal, organisation, unit, editors):
            raise Forbidden(f"you are not among the editors of pathway '{pathway_id}' here")
        waiting = self.pending(session, pathway_id, organisation, unit)
        if waiting is not None:
            raise Conflict(
                f"version {waiting.version} of '{pathway_id}' awaits approval here; "
                "approve or reject it first"
            )
        new_hash = rules.pathway_hash(doc)
        if base is not None and new_hash == base.hash:
            raise InvalidInput("the draft is identical to the version in force", location="")
        needs_approval = bool(rules.changes_needing_approval(base.doc if base else None, doc))
        latest = session.scalar(
            select(func.max(PathwayVersion.version)).where(PathwayVersion.pathway_id == pathway_id)
        )
        version = int(latest or 0) + 1
        session.add(
            PathwayVersion(
                pathway_id=pathway_id,
                version=version,
                body={**draft, "version": version},
                content_hash=new_hash,
                author=principal.subject,
                reason=reason,
                created_at=datetime.now(UTC),
                organisation=organisation,
                unit=unit,
                needs_approval=needs_approval,
                base_version=base.version if base is not None else None,
            )
        )
        try:
            session.flush()
        except IntegrityError as exc:  # another version of this pathway was stored meanwhile
            raise Conflict(
                f"another version of '{pathway_id}' was stored at the same time; try again"
            ) from exc
        return {
            "id": pathway_id,
            "version": version,
            "hash": new_hash,
            "organisation": organisation,
            "unit": unit,
            "status": PENDING if needs_approval else PUBLISHED,
        }

    def decide(
        self,
        session: Session,
        principal: Principal,
        pathway_id: str,
        version: int,
        decision: str,
        reason: str,
    ) -> dict[str, Any]:
        """Approve or reject a proposed version: a second person, never its author."""
        refuse_person_number(reason, "reason")
        # Decisions and publishes of one pathway take turns (any replica): the stale-base check
        # below then sees every publish that committed before this approval.
        lock_all(session, PATHWAY_LOCKS, [pathway_id])
        row = self.version_row(session, principal, pathway_id, version)
        if not row.needs_approval:
            raise Conflict(f"version {version} needed no approval: it took effect when published")
        earlier = self.decision_of(session, row)
        if earlier is not None:
            raise Conflict(f"version {version} was already {earlier.decision}")
        if principal.subject == row.author:
            raise Forbidden(
                "you proposed this change: a second clinician must approve or reject it"
            )
        try:
            base: InForce | None = self.in_force(session, pathway_id, row.organisation, row.unit)
        except NotFound:
            base = None
        editors = (
            base.doc.editors
            if base is not None
            else self._document(session, pathway_id, version)[0].editors
        )
        if not may_approve_pathway(principal, row.organisation, row.unit, editors, row.author):
            raise Forbidden(
                "approval needs a second clinician who may edit this pathway in its organisation"
            )
        if decision == APPROVED and (base.version if base else None) != row.base_version:
            raise Conflict(
                f"the version in force changed since version {version} was proposed; "
                "reject it and propose the change again"
            )
        now = datetime.now(UTC)
        session.add(
            PathwayVersionDecision(
                id=str(uuid.uuid4()),
                pathway_version_id=row.id,
                pathway_id=pathway_id,
                version=version,
                decision=decision,
                decided_by=principal.subject,
                role=principal.role.value,
                organisation=row.organisation or principal.organisation,
                reason=reason,
                decided_at=now,
            )
        )
        try:
            session.flush()
        except IntegrityError as exc:  # a second replica decided the same version first
            raise Conflict(f"version {version} was decided by someone else just now") from exc
        return {
            "id": pathway_id,
            "version": version,
            "status": decision,
            "organisation": row.organisation,
            "unit": row.unit,
            "author": row.author,
            "decided_by": principal.subject,
            "decided_at": now,
        }

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
        refuse_person_number(reason, "reason")
        now = datetime.now(UTC)
        if _aware(expires_at) <= now:
            raise InvalidInput("expires_at must be in the future", location="expires_at")
        doc = self.for_patient(session, patient).doc
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
            found = self.for_patient(session, patient)
            version, doc, doc_hash = found.version, found.doc, found.hash
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
        # One vectorised evaluation per version in force: patients of different organisations (or
        # units) on the same pathway may be scored by different versions.
        by_scope: dict[tuple[str, str, str], list[int]] = {}
        for k, p in enumerate(patients):
            by_scope.setdefault((p.pathway_id, p.organisation, p.unit), []).append(k)
        for (pathway_id, organisation, unit), members in by_scope.items():
            version, named, doc_hash = self.current(session, pathway_id, organisation, unit)
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
