"""The schema. Record entries (assessments, pathway versions, overrides, sign-offs, audit rows) are
insert-only: the API never updates or deletes them; a correction is a new row that points back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ACTIVE_ITEM_CONDITION = "state IN ('open', 'acknowledged', 'escalated')"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    identifier_system: Mapped[str] = mapped_column(String(64))
    # The fødselsnummer/D-number itself: needed to match incoming messages; never logged.
    identifier_value: Mapped[str] = mapped_column(String(11), unique=True)
    birth_date: Mapped[datetime] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(16))
    pathway_id: Mapped[str] = mapped_column(String(64))
    organisation: Mapped[str] = mapped_column(String(16), index=True)
    unit: Mapped[str] = mapped_column(String(64), index=True)
    # Pasient- og brukerrettighetsloven § 3-4: a 12–16-year-old may withhold information from parents.
    confidential_to_guardians: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(64))
    # Pathway options that change the rules, e.g. {"hypercapnic_failure": true} -> NEWS2 scale 2.
    pathway_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The name clinicians work by. Personal data like the identifier: never logged.
    display_name: Mapped[str | None] = mapped_column(String(200))


class IngestedResource(Base):
    """Every accepted FHIR resource as received: the idempotency key and the record of what came in."""

    __tablename__ = "ingested_resources"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_by: Mapped[str] = mapped_column(String(64))


class ResourceVersion(Base):
    """A later version of a received resource (FHIR `corrected`, `amended`, `entered-in-error`).

    The first version is the IngestedResource row itself; each resend that replaces it adds a row
    here (insert-only), so every version the sender ever sent stays on record.
    """

    __tablename__ = "resource_versions"
    __table_args__ = (UniqueConstraint("resource_id", "version_id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    resource_id: Mapped[str] = mapped_column(ForeignKey("ingested_resources.id"), index=True)
    version_id: Mapped[int] = mapped_column(Integer)  # 2, 3, … (1 is the IngestedResource)
    status: Mapped[str] = mapped_column(String(32))
    content_hash: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_by: Mapped[str] = mapped_column(String(64))


class CdsFeedback(Base):
    """CDS Hooks 2.0 feedback on a card: accepted or overridden, with the reason (insert-only)."""

    __tablename__ = "cds_feedback"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64))
    card: Mapped[str] = mapped_column(String(64), index=True)  # the card's uuid
    outcome: Mapped[str] = mapped_column(String(16))  # accepted | overridden
    accepted_suggestions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    override_reason: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    user_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_by: Mapped[str] = mapped_column(String(64))
    organisation: Mapped[str | None] = mapped_column(String(16))


class Reading(Base):
    """One canonical value (a BP panel gives two; a questionnaire gives a score and its items).

    On PostgreSQL partitioned by month of ``effective_s`` (migration 0014): there the primary key
    is (id, effective_s) and the unique index (resource_id, name, effective_s).
    """

    __tablename__ = "readings"
    __table_args__ = (
        Index("ix_readings_patient_time", "patient_id", "effective_s"),
        # One reading per stored resource component (migration 0005).
        Index("uq_readings_resource_component", "resource_id", "name", unique=True),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    resource_id: Mapped[str] = mapped_column(ForeignKey("ingested_resources.id"), index=True)
    name: Mapped[str] = mapped_column(
        String(96)
    )  # canonical measurement or "q:<questionnaire>:<item>"
    value: Mapped[float] = mapped_column(Float)
    effective_s: Mapped[int] = mapped_column(BigInteger)


class Assessment(Base):
    """An immutable record entry: what was scored, with what, and why.

    On PostgreSQL partitioned by month of ``created_at`` (migration 0014): the primary key is
    (id, created_at), and worklist_items.assessment_id is checked by a trigger, not a foreign key.
    """

    __tablename__ = "assessments"
    __table_args__ = (Index("ix_assessments_patient_created", "patient_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    trigger: Mapped[str] = mapped_column(String(32))  # ingestion | schedule | replay
    model_name: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(64))
    pathway_id: Mapped[str] = mapped_column(String(64))
    pathway_version: Mapped[int] = mapped_column(Integer)
    rule_set_hash: Mapped[str] = mapped_column(String(80))
    features: Mapped[list[Any]] = mapped_column(
        JSON
    )  # snapshot in FEATURE_NAMES order, None = missing
    probability: Mapped[float | None] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(16))
    explanation: Mapped[dict[str, Any]] = mapped_column(JSON)
    basis: Mapped[list[Any]] = mapped_column(JSON)  # ingested resource ids used
    organisation: Mapped[str] = mapped_column(String(16), index=True)
    supersedes_id: Mapped[str | None] = mapped_column(String(36))

    @property
    def level_source(self) -> str:
        """Where the level came from: rule | model | rule+model | none (the combining policy,
        models/operating_points.py). Older assessments stored only ``decided_by``."""
        triage = (self.explanation or {}).get("triage") or {}
        if "level_source" in triage:
            return str(triage["level_source"])
        decided = triage.get("decided_by", "none")
        return {"rules": "rule", "model": "model", "rules+model": "rule+model"}.get(decided, "none")


class WorklistItem(Base):
    __tablename__ = "worklist_items"
    __table_args__ = (
        Index("ix_worklist_unit_state", "unit", "state"),
        # At most one active item per patient, whatever replica opens it (migration 0005).
        Index(
            "uq_worklist_one_active_per_patient",
            "patient_id",
            unique=True,
            postgresql_where=text(ACTIVE_ITEM_CONDITION),
            sqlite_where=text(ACTIVE_ITEM_CONDITION),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    organisation: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # open | acknowledged | escalated | resolved
    level: Mapped[str] = mapped_column(String(16))
    level_rank: Mapped[int] = mapped_column(Integer)  # 0 = most urgent, for ordering
    probability: Mapped[float | None] = mapped_column(Float)
    assessment_id: Mapped[str] = mapped_column(ForeignKey("assessments.id"))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_data_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalated_by: Mapped[str | None] = mapped_column(String(64))
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Whom an escalation is for: "role:<role>", "unit:<unit>" or "hpr:<HPR number>".
    escalated_to: Mapped[str | None] = mapped_column(String(120))
    # The level held (``level``) was reached at ``peak_at`` by ``peak_assessment_id`` for
    # ``peak_reasons``; a re-score may not lower it, only a clinician's action (migration 0009).
    peak_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    peak_assessment_id: Mapped[str | None] = mapped_column(String(36))
    peak_reasons: Mapped[list[Any] | None] = mapped_column(JSON)
    peak_level_source: Mapped[str | None] = mapped_column(String(16))  # migration 0015
    version: Mapped[int] = mapped_column(Integer, default=1)  # optimistic locking across replicas

    __mapper_args__ = {"version_id_col": version}

    def hold_peak(self, assessment: Assessment) -> None:
        """The item's level is now held from ``assessment``: when, why, and from which source."""
        self.peak_at, self.peak_assessment_id = assessment.as_of, assessment.id
        self.peak_level_source = assessment.level_source

    def level_source_with(self, newest: Assessment) -> str:
        """Where the level the item shows came from: while a higher level is held, the held
        assessment's source (rule | model | rule+model), else the newest assessment's."""
        if self.level != newest.level and self.peak_level_source:
            return self.peak_level_source
        return newest.level_source


class WorklistEvent(Base):
    """The item's history: every transition with who, when and the note."""

    __tablename__ = "worklist_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    item_id: Mapped[str] = mapped_column(ForeignKey("worklist_items.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
    assessment_id: Mapped[str | None] = mapped_column(String(36))
    recipient: Mapped[str | None] = mapped_column(String(120))  # escalations: see WorklistItem


class PathwayVersion(Base):
    __tablename__ = "pathway_versions"
    # Version numbers run per pathway across every scope, so an assessment's (pathway, version)
    # names exactly one row.
    __table_args__ = (
        UniqueConstraint("pathway_id", "version"),
        Index("ix_pathway_versions_scope", "pathway_id", "organisation", "unit"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    pathway_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(80))  # "sha256:<hex>"
    author: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Scope: NULL organisation = the regional template library (admin); NULL unit = the whole
    # organisation. A patient is scored by its unit's, else its organisation's, else the template.
    organisation: Mapped[str | None] = mapped_column(String(16), default=None)
    unit: Mapped[str | None] = mapped_column(String(64), default=None)
    # Four-eyes: a change to thresholds or levels scores no one until a second person approves it
    # (a PathwayVersionDecision row); other changes take effect when published.
    needs_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    base_version: Mapped[int | None] = mapped_column(
        Integer, default=None
    )  # in force when proposed


class PathwayVersionDecision(Base):
    """The second person's approval or rejection of a proposed pathway version (one per version)."""

    __tablename__ = "pathway_version_decisions"
    __table_args__ = (
        Index("uq_pathway_version_decisions_version", "pathway_version_id", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    pathway_version_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("pathway_versions.id")
    )
    pathway_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))  # approved | rejected
    decided_by: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    organisation: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PatientOverride(Base):
    """A clinician's personal threshold for one patient, with reason and expiry."""

    __tablename__ = "patient_overrides"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    supersedes_id: Mapped[str | None] = mapped_column(String(36))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class PatientTransfer(Base):
    """A patient's follow-up moved to another unit or organisation, with why and on what basis.

    The history (readings, assessments, worklist events) stays with the patient: the receiving
    unit continues the record; the sending one no longer sees it unless given a grant.
    """

    __tablename__ = "patient_transfers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    from_organisation: Mapped[str] = mapped_column(String(16))
    from_unit: Mapped[str] = mapped_column(String(64))
    to_organisation: Mapped[str] = mapped_column(String(16))
    to_unit: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(String(200))
    transferred_by: Mapped[str] = mapped_column(String(64))
    transferred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PatientAccessGrant(Base):
    """Read access to one patient for a named organisation, for a limited time (samhandling,
    e.g. the municipality's home-care service). Revoked by setting revoked_at, never deleted."""

    __tablename__ = "patient_access_grants"
    __table_args__ = (
        Index("ix_patient_access_grants_grantee", "grantee_organisation", "valid_until"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    grantee_organisation: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(String(200))
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    granted_by: Mapped[str] = mapped_column(String(64))
    granted_by_organisation: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(64))


class AuditEntry(Base):
    """Normen / pasientjournalloven § 22: who did what to whose record, hash-chained.

    On PostgreSQL partitioned by month of ``at`` (migration 0014): the primary key is (seq, at);
    one seq per row is held by the writers' advisory lock and checked by `triage audit verify`.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(32))
    organisation: Mapped[str | None] = mapped_column(String(16))
    patient_id: Mapped[str | None] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(16))  # read | write | refuse
    resource: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[int] = mapped_column(Integer)  # HTTP status
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class OutboxEntry(Base):
    """A FHIR message for DIPS, written in the same transaction as the assessment."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    item_id: Mapped[str] = mapped_column(String(36))
    event: Mapped[str] = mapped_column(String(32))  # opened | level-changed | resolved | updated
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)  # FHIR transaction Bundle
    state: Mapped[str] = mapped_column(
        String(16), default="pending"
    )  # pending | delivered | recorded
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)


class Outcome(Base):
    """A known outcome recorded against a patient (service.domain.outcomes): it labels past
    assessments for performance monitoring and local recalibration."""

    __tablename__ = "outcomes"
    __table_args__ = (Index("ix_outcomes_organisation_occurred_at", "organisation", "occurred_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    # The event's onset (or, for event_type "none", the follow-up that found no event).
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # One of service.domain.outcomes.EVENT_TYPES; deteriorated == (event_type != "none").
    event_type: Mapped[str] = mapped_column(String(32), server_default="deterioration")
    deteriorated: Mapped[bool] = mapped_column(Boolean)
    organisation: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DriftReport(Base):
    __tablename__ = "drift_reports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    report_key: Mapped[str] = mapped_column(String(64), unique=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model_version: Mapped[str] = mapped_column(String(64))
    pathway: Mapped[str | None] = mapped_column(String(64))
    organisation: Mapped[str | None] = mapped_column(String(16))
    verdict: Mapped[str] = mapped_column(String(16))
    drifted_features: Mapped[list[Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    json_path: Mapped[str] = mapped_column(String(300))
    html_path: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(64))


class DriftSignOff(Base):
    __tablename__ = "drift_signoffs"
    __table_args__ = (Index("uq_drift_signoffs_report", "report_id", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Unique: one immutable sign-off per report (migration 0004).
    report_id: Mapped[str] = mapped_column(ForeignKey("drift_reports.id"), index=True)
    decision: Mapped[str] = mapped_column(String(32))  # accepted | action-required | escalated
    comment: Mapped[str] = mapped_column(Text)
    signed_by: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobRun(Base):
    """When a scheduled job last ran, whichever replica ran it (exactly once per period)."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    runner: Mapped[str] = mapped_column(String(128))  # host:pid of the replica


class WebSession(Base):
    """A signed-in browser session. The cookie carries a random id; this row says whether the
    session is still open, so signing out ends it on the server and a saved cookie stops working.
    Only the id's SHA-256 is stored: reading this table does not let anyone take a session over.
    """

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ExportJob(Base):
    """A FHIR Bulk Data export (service.domain.export): its request, its state and, when done,
    its manifest. Operational state, updated as the job runs; the release itself is the
    insert-only DataRelease row."""

    __tablename__ = "export_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    requested_by: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(32))
    # The caller's scope when it asked: organisations and units (None = every unit).
    organisations: Mapped[list[Any]] = mapped_column(JSON)
    units: Mapped[list[Any] | None] = mapped_column(JSON)
    request_url: Mapped[str] = mapped_column(Text)
    # recipient, purpose, legal basis, _type, _since, group: the validated parameters.
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))  # in-progress | complete | failed
    progress: Mapped[str | None] = mapped_column(String(120))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class ExportFile(Base):
    """One NDJSON file of an export, kept in the database so every replica can serve it."""

    __tablename__ = "export_files"
    __table_args__ = (UniqueConstraint("job_id", "name"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("export_jobs.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))  # e.g. Observation.ndjson
    resource_type: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # output | error
    count: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)


class DataRelease(Base):
    """A release of data for secondary use: who released what to whom, why and on what legal
    basis, with a SHA-256 of every file. Insert-only; the audit log holds a chained row that
    names it and its content hash, so the record cannot be changed unnoticed."""

    __tablename__ = "data_releases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("export_jobs.id"), unique=True)
    released_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    released_by: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    organisation: Mapped[str | None] = mapped_column(String(16), index=True)
    recipient: Mapped[str] = mapped_column(String(120))
    purpose: Mapped[str] = mapped_column(Text)
    # helseregisterloven | consent | rek-approval (service.domain.export.LEGAL_BASES)
    legal_basis: Mapped[str] = mapped_column(String(32))
    legal_basis_reference: Mapped[str | None] = mapped_column(String(120))
    # Everything released: the request, every file with its type, count and SHA-256, and what
    # the k-anonymity rule withheld.
    contents: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))


class QuestionnaireTask(Base):
    """A questionnaire sent to a patient (a FHIR Task to Helsenorge): when it was due, and
    whether it was answered (a QuestionnaireResponse whose basedOn names it) or missed."""

    __tablename__ = "questionnaire_tasks"
    __table_args__ = (
        UniqueConstraint("patient_id", "questionnaire", "opens_at"),
        Index("ix_questionnaire_tasks_status_closes", "status", "closes_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    questionnaire: Mapped[str] = mapped_column(String(80))
    questionnaire_url: Mapped[str] = mapped_column(String(300))
    questionnaire_version: Mapped[str] = mapped_column(String(32))
    pathway_id: Mapped[str] = mapped_column(String(64))
    pathway_version: Mapped[int] = mapped_column(Integer)
    organisation: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str] = mapped_column(String(64))
    opens_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closes_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))  # requested | completed | missed
    response_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
