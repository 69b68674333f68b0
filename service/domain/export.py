"""Bulk export for secondary use (quality registries, research): FHIR Bulk Data Access, always
pseudonymised for one named recipient, k-anonymous, and recorded as a release.

The job runs off the request path in a thread of the replica that accepted the kick-off; its
state, files and manifest live in the database, so any replica answers the status and file
requests. A job whose replica stops mid-way stays "in-progress" (the IG lets a client give up and
ask again); nothing is released until the job completes, and the release record is written in the
same transaction as the files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from models.identifiers import contains_person_number
from service.config import Settings
from service.db.engine import transaction
from service.db.tables import (
    Assessment,
    DataRelease,
    ExportFile,
    ExportJob,
    IngestedResource,
    Outcome,
    PathwayVersion,
    Patient,
    ResourceVersion,
)
from service.domain.free_text import refuse_person_number
from service.errors import BadRequest, InvalidInput, NotFound, TriageError
from service.fhir import bulk
from service.security.principal import Principal, Role
from service.security.visibility import patient_filter

log = logging.getLogger("triage.export")

# The legal bases a release to a registry or a research project can rest on (Norway).
LEGAL_BASES: dict[str, str] = {
    # helseregisterloven §§ 6–11 (and the register's own regulation): a statutory quality or
    # health register
    "helseregisterloven": "helseregisterloven (statutory health or quality register)",
    # the patient's own consent (helseforskningsloven § 13, GDPR art. 9(2)(a))
    "consent": "the patients' consent",
    # helseforskningsloven § 35: exemption from consent approved by REK
    "rek-approval": "REK approval (regional committee for medical and health research ethics)",
}
STATES = ("in-progress", "complete", "failed")


class ExportUnavailable(TriageError):
    """Exports are refused until the service is configured for them."""

    status_code = 503
    code = "transient"


@dataclass(frozen=True)
class ExportRequest:
    recipient: str
    purpose: str
    legal_basis: str
    legal_basis_reference: str | None
    types: tuple[str, ...]
    since: datetime | None
    group: str | None  # "pathway.<id>" or "unit.<unit>", for Group/{id}/$export


def parse_request(
    params: Mapping[str, str], prefer: str | None, group: str | None = None
) -> ExportRequest:
    """Validate a kick-off's headers and parameters; refusals name the parameter (400)."""
    if "respond-async" not in (prefer or "").lower():
        raise BadRequest("a bulk export needs the header Prefer: respond-async", location="Prefer")
    output_format = params.get("_outputFormat")
    if output_format is not None and output_format not in bulk.OUTPUT_FORMATS:
        raise BadRequest(
            f"_outputFormat must be {bulk.NDJSON} (NDJSON is the only format)",
            location="_outputFormat",
        )
    types = bulk.EXPORT_TYPES
    if params.get("_type"):
        asked = tuple(t.strip() for t in params["_type"].split(",") if t.strip())
        unknown = [t for t in asked if t not in bulk.EXPORT_TYPES]
        if unknown or not asked:
            raise BadRequest(
                f"_type may name only {', '.join(bulk.EXPORT_TYPES)}", location="_type"
            )
        types = tuple(t for t in bulk.EXPORT_TYPES if t in asked)
    since = None
    if params.get("_since"):
        try:
            since = datetime.fromisoformat(params["_since"].replace("Z", "+00:00"))
        except ValueError as exc:
            raise BadRequest(
                "_since must be a FHIR instant, e.g. 2026-01-01T00:00:00Z", location="_since"
            ) from exc
        if since.tzinfo is None:
            raise BadRequest("_since must carry a time zone (e.g. Z)", location="_since")
    recipient = (params.get("recipient") or "").strip()
    if not recipient or len(recipient) > 120 or not recipient.isprintable():
        raise BadRequest(
            "recipient is required: the named registry or project the data is released to "
            "(at most 120 characters)",
            location="recipient",
        )
    purpose = (params.get("purpose") or "").strip()
    if not purpose or len(purpose) > 1000:
        raise BadRequest(
            "purpose is required: what the recipient will use the data for", location="purpose"
        )
    legal_basis = (params.get("legalBasis") or "").strip()
    if legal_basis not in LEGAL_BASES:
        raise BadRequest(
            f"legalBasis must be one of: {', '.join(LEGAL_BASES)}", location="legalBasis"
        )
    reference = (params.get("legalBasisReference") or "").strip() or None
    if legal_basis == "rek-approval" and not reference:
        raise BadRequest(
            "legalBasisReference (the REK case number) is required with rek-approval",
            location="legalBasisReference",
        )
    if reference is not None and len(reference) > 120:
        raise BadRequest(
            "legalBasisReference is at most 120 characters", location="legalBasisReference"
        )
    for field, text in (
        ("recipient", recipient),
        ("purpose", purpose),
        ("legalBasisReference", reference),
    ):
        refuse_person_number(text, field)
    return ExportRequest(recipient, purpose, legal_basis, reference, types, since, group)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _canonical_hash(document: Any) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class ExportService:
    """Kick-off, the job itself, status and files."""

    def __init__(self, sessions: sessionmaker[Session], engine: Any, settings: Settings) -> None:
        self.sessions = sessions
        self.engine = engine
        self.settings = settings
        self.threads: list[threading.Thread] = []

    # ---- kick-off ------------------------------------------------------------------------

    def kick_off(
        self, principal: Principal, request: ExportRequest, request_url: str, base_url: str
    ) -> str:
        if (
            self.settings.environment == "production"
            and self.settings.export_pseudonym_secret.startswith("dev-only")
        ):
            raise ExportUnavailable(
                "bulk export is not configured: TRIAGE_EXPORT_PSEUDONYM_SECRET is not set"
            )
        job_id = str(uuid.uuid4())
        with transaction(self.sessions) as session:
            if request.group is not None:
                self._check_group(session, principal, request.group)
            session.add(
                ExportJob(
                    id=job_id,
                    requested_at=datetime.now(UTC),
                    requested_by=principal.subject,
                    role=principal.role.value,
                    organisations=list(principal.organisations),
                    units=list(principal.units) if principal.units is not None else None,
                    request_url=request_url,
                    parameters={
                        "recipient": request.recipient,
                        "purpose": request.purpose,
                        "legal_basis": request.legal_basis,
                        "legal_basis_reference": request.legal_basis_reference,
                        "types": list(request.types),
                        "since": request.since.isoformat() if request.since else None,
                        "group": request.group,
                        "base_url": base_url,
                    },
                    state="in-progress",
                    progress="queued",
                )
            )
        thread = threading.Thread(
            target=self.run_safely, args=(job_id,), name=f"bulk-export-{job_id[:8]}", daemon=True
        )
        self.threads.append(thread)
        thread.start()
        return job_id

    def _group_clause(self, group: str) -> Any:
        kind, _, value = group.partition(".")
        if kind == "pathway" and value:
            return Patient.pathway_id == value
        if kind == "unit" and value:
            return Patient.unit == value
        return None

    def _check_group(self, session: Session, principal: Principal, group: str) -> None:
        clause = self._group_clause(group)
        found = clause is not None and session.scalar(
            select(func.count()).select_from(Patient).where(patient_filter(principal), clause)
        )
        if not found:
            # Groups are "pathway.<id>" and "unit.<unit>" over the caller's own patients; one
            # with no patient the caller may see is answered as not existing.
            raise NotFound(f"Group/{group} not found (groups: pathway.<id>, unit.<unit>)")

    # ---- the job -------------------------------------------------------------------------

    def run_safely(self, job_id: str) -> None:
        try:
            self.run(job_id)
        except Exception as exc:  # the job must end in a state the client can read
            log.exception("bulk export failed", extra={"fields": {"job": job_id}})
            message = exc.message if isinstance(exc, TriageError) else "the export failed"
            with transaction(self.sessions) as session:
                job = session.get(ExportJob, job_id)
                if job is not None and job.state == "in-progress":
                    job.state, job.error = "failed", message
                    job.finished_at = datetime.now(UTC)

    def run(self, job_id: str) -> None:
        with self.sessions() as session:
            job = session.get(ExportJob, job_id)
            if job is None:
                raise NotFound(f"export {job_id} not found")
            principal = Principal(
                subject=job.requested_by,
                role=Role(job.role),
                organisation=job.organisations[0],
                units=tuple(job.units) if job.units is not None else None,
                also_for=tuple(job.organisations[1:]),
            )
            params = dict(job.parameters)
            transaction_time = _utc(job.requested_at)
            request_url = job.request_url
            built = self._build(session, principal, params, transaction_time, job_id)
        self._progress(job_id, "writing files and the release record")
        self._complete(job_id, principal, params, transaction_time, request_url, built)

    def _progress(self, job_id: str, text: str) -> None:
        with transaction(self.sessions) as session:
            job = session.get(ExportJob, job_id)
            if job is not None:
                job.progress = text[:120]

    def _patients(
        self, session: Session, principal: Principal, params: dict[str, Any]
    ) -> dict[str, Patient]:
        query = select(Patient).where(patient_filter(principal))
        if params.get("group"):
            query = query.where(self._group_clause(params["group"]))
        return {p.id: p for p in session.scalars(query)}

    def _received(
        self,
        session: Session,
        rtype: str,
        patient_ids: list[str],
        since: datetime | None,
        until: datetime,
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """(resource id, patient id, latest body) of received resources, entered-in-error out."""
        rows = session.execute(
            select(
                IngestedResource.id,
                IngestedResource.patient_id,
                IngestedResource.body,
                IngestedResource.received_at,
            )
            .where(IngestedResource.resource_type == rtype)
            .where(IngestedResource.patient_id.in_(patient_ids))
            .where(IngestedResource.received_at <= until)
            .order_by(IngestedResource.received_at, IngestedResource.id)
        ).all()
        latest: dict[str, tuple[int, dict[str, Any], datetime]] = {}
        if rows:
            for version in session.scalars(
                select(ResourceVersion)
                .where(ResourceVersion.resource_id.in_([r[0] for r in rows]))
                .where(ResourceVersion.received_at <= until)
            ):
                held = latest.get(version.resource_id)
                if held is None or version.version_id > held[0]:
                    latest[version.resource_id] = (
                        version.version_id,
                        version.body,
                        version.received_at,
                    )
        out = []
        for rid, pid, body, received_at in rows:
            changed_at = _utc(received_at)
            if rid in latest:
                body, changed_at = latest[rid][1], _utc(latest[rid][2])
            if (body or {}).get("status") == "entered-in-error":
                continue
            if since is not None and changed_at < since:
                continue
            out.append((rid, pid, body))
        return out

    def _build(
        self,
        session: Session,
        principal: Principal,
        params: dict[str, Any],
        transaction_time: datetime,
        job_id: str,
    ) -> dict[str, Any]:
        types: list[str] = params["types"]
        since = _utc(datetime.fromisoformat(params["since"])) if params.get("since") else None
        pseudonyms = bulk.Pseudonymiser(
            self.settings.export_pseudonym_secret,
            params["recipient"],
            self.settings.export_time_shift_max_days,
        )
        patients = self._patients(session, principal, params)
        ids = sorted(patients)
        # (patient id or None, resource type, resource)
        rows: list[tuple[str | None, str, dict[str, Any]]] = []
        if "Observation" in types:
            self._progress(job_id, "Observation")
            for rid, pid, body in self._received(
                session, "Observation", ids, since, transaction_time
            ):
                rows.append((pid, "Observation", bulk.observation(pseudonyms, rid, pid, body)))
            query = (
                select(Outcome)
                .where(Outcome.patient_id.in_(ids))
                .where(Outcome.recorded_at <= transaction_time)
            )
            if since is not None:
                query = query.where(Outcome.recorded_at >= since)
            for row in session.scalars(query.order_by(Outcome.recorded_at, Outcome.id)):
                rows.append(
                    (
                        row.patient_id,
                        "Observation",
                        bulk.outcome(
                            pseudonyms,
                            row.id,
                            row.patient_id,
                            occurred_at=_utc(row.occurred_at),
                            event_type=row.event_type,
                        ),
                    )
                )
        if "QuestionnaireResponse" in types:
            self._progress(job_id, "QuestionnaireResponse")
            for rid, pid, body in self._received(
                session, "QuestionnaireResponse", ids, since, transaction_time
            ):
                rows.append(
                    (
                        pid,
                        "QuestionnaireResponse",
                        bulk.questionnaire_response(pseudonyms, rid, pid, body),
                    )
                )
        if "RiskAssessment" in types:
            self._progress(job_id, "RiskAssessment")
            query2 = (
                select(Assessment)
                .where(Assessment.patient_id.in_(ids))
                .where(Assessment.created_at <= transaction_time)
            )
            if since is not None:
                query2 = query2.where(Assessment.created_at >= since)
            assessments = list(
                session.scalars(query2.order_by(Assessment.created_at, Assessment.id))
            )
            basis_ids = sorted({str(b) for a in assessments for b in a.basis or []})
            basis_types: dict[str, str] = {}
            if basis_ids:
                found = select(IngestedResource.id, IngestedResource.resource_type).where(
                    IngestedResource.id.in_(basis_ids)
                )
                basis_types = {rid: rtype for rid, rtype in session.execute(found)}
            for a in assessments:
                rows.append(
                    (
                        a.patient_id,
                        "RiskAssessment",
                        bulk.risk_assessment(
                            pseudonyms,
                            a.id,
                            a.patient_id,
                            as_of=_utc(a.as_of),
                            level=a.level,
                            probability=a.probability,
                            model=f"{a.model_name or 'rules-only'} {a.model_version or ''}".strip(),
                            pathway=a.pathway_id,
                            pathway_version=a.pathway_version,
                            basis=[
                                (basis_types.get(str(b), "Observation"), str(b))
                                for b in a.basis or []
                            ],
                        ),
                    )
                )
        with_rows = {pid for pid, _, _ in rows if pid is not None}
        if "Patient" in types:
            for pid in ids:
                p = patients[pid]
                new = since is None or _utc(p.created_at) >= since
                if pid in with_rows or new:
                    rows.append(
                        (
                            pid,
                            "Patient",
                            bulk.patient(
                                pseudonyms,
                                pid,
                                _as_date(p.birth_date),
                                p.sex,
                                p.pathway_id,
                                p.unit,
                                transaction_time.date(),
                            ),
                        )
                    )
        if "PlanDefinition" in types:
            query3 = (
                select(PathwayVersion)
                .where(
                    or_(
                        PathwayVersion.organisation.is_(None),
                        PathwayVersion.organisation.in_(principal.organisations),
                    )
                )
                .where(PathwayVersion.created_at <= transaction_time)
            )
            if since is not None:
                query3 = query3.where(PathwayVersion.created_at >= since)
            group = params.get("group") or ""
            if group.startswith("pathway."):
                query3 = query3.where(PathwayVersion.pathway_id == group.removeprefix("pathway."))
            for v in session.scalars(
                query3.order_by(PathwayVersion.pathway_id, PathwayVersion.version)
            ):
                rows.append(
                    (
                        None,
                        "PlanDefinition",
                        bulk.plan_definition(
                            v.pathway_id,
                            v.version,
                            v.body,
                            v.content_hash,
                            _utc(v.created_at),
                            v.organisation,
                        ),
                    )
                )
        # k-anonymity over the patients this export would release.
        k = self.settings.export_k_anonymity
        released = {pid for pid, _, _ in rows if pid is not None}
        on = transaction_time.date()

        def quasi(pid: str) -> tuple[str, str, str, str]:
            p = patients[pid]
            return (bulk.age_band(_as_date(p.birth_date), on), p.sex, p.unit, p.pathway_id)

        sizes = Counter(quasi(pid) for pid in released)
        withheld = {pid for pid in released if sizes[quasi(pid)] < k}
        kept = [(pid, rtype, r) for pid, rtype, r in rows if pid is None or pid not in withheld]
        suppressed = {
            "k": k,
            "groups": len({quasi(pid) for pid in withheld}),
            "patients": len(withheld),
            "rows": len(rows) - len(kept),
        }
        return {
            "rows": kept,
            "suppressed": suppressed,
            "patients": len(released - withheld),
        }

    def _complete(
        self,
        job_id: str,
        principal: Principal,
        params: dict[str, Any],
        transaction_time: datetime,
        request_url: str,
        built: dict[str, Any],
    ) -> None:
        from service.security.audit import AuditEvent, append_events

        base = params["base_url"]
        files: list[tuple[str, str, str, int, str]] = []  # name, type, kind, count, content
        by_type: dict[str, list[dict[str, Any]]] = {}
        for _, rtype, resource in built["rows"]:
            by_type.setdefault(rtype, []).append(resource)
        for rtype in bulk.EXPORT_TYPES:
            if by_type.get(rtype):
                content = bulk.ndjson(by_type[rtype])
                files.append((f"{rtype}.ndjson", rtype, "output", len(by_type[rtype]), content))
        suppressed = built["suppressed"]
        if suppressed["rows"]:
            outcome = bulk.suppression_outcome(
                suppressed["k"], suppressed["groups"], suppressed["patients"], suppressed["rows"]
            )
            files.append(
                ("OperationOutcome.ndjson", "OperationOutcome", "error", 1, bulk.ndjson([outcome]))
            )
        for name, _, _, _, content in files:
            # A last guard: pseudonymisation must have removed every person number.
            if contains_person_number(content):
                raise InvalidInput(
                    f"{name} held something written like a national identity number; nothing "
                    "was released",
                    location=name,
                )
        described = [
            {
                "type": rtype,
                "url": f"{base}/bulk-files/{job_id}/{name}",
                "count": count,
                "sha256": hashlib.sha256(content.encode()).hexdigest(),
                "kind": kind,
            }
            for name, rtype, kind, count, content in files
        ]
        release_id = str(uuid.uuid4())
        released_at = datetime.now(UTC)
        contents = {
            "release": release_id,
            "request": request_url,
            "transactionTime": transaction_time.isoformat(),
            "recipient": params["recipient"],
            "purpose": params["purpose"],
            "legalBasis": params["legal_basis"],
            "legalBasisReference": params["legal_basis_reference"],
            "releasedBy": principal.subject,
            "role": principal.role.value,
            "scope": {
                "organisations": list(principal.organisations),
                "units": list(principal.units) if principal.units is not None else None,
                "group": params.get("group"),
                "types": params["types"],
                "since": params.get("since"),
            },
            "patients": built["patients"],
            "files": described,
            "suppressed": suppressed,
            "pseudonymisation": {
                "identifiers": "HMAC-SHA256 keyed by the service secret and the recipient",
                "birthDate": "year only; age band as meta.tag",
                "times": f"shifted per patient by a secret ±1–{self.settings.export_time_shift_max_days} days",
                "freeText": "not released (notes, narrative, string answers, extensions)",
            },
        }
        content_hash = _canonical_hash(contents)
        outputs = [
            {"type": d["type"], "url": d["url"], "count": d["count"]}
            for d in described
            if d["kind"] == "output"
        ]
        errors = [{"type": d["type"], "url": d["url"]} for d in described if d["kind"] == "error"]
        release_summary = {
            "id": release_id,
            "recipient": params["recipient"],
            "purpose": params["purpose"],
            "legalBasis": params["legal_basis"],
            "sha256": content_hash,
            "kAnonymity": suppressed,
            "files": [{"url": d["url"], "sha256": d["sha256"]} for d in described],
        }
        manifest = bulk.manifest(
            transaction_time=transaction_time,
            request_url=request_url,
            outputs=outputs,
            errors=errors,
            release=release_summary,
        )
        with transaction(self.sessions) as session:
            for name, rtype, kind, count, content in files:
                session.add(
                    ExportFile(
                        job_id=job_id,
                        name=name,
                        resource_type=rtype,
                        kind=kind,
                        count=count,
                        sha256=hashlib.sha256(content.encode()).hexdigest(),
                        content=content,
                    )
                )
            session.add(
                DataRelease(
                    id=release_id,
                    job_id=job_id,
                    released_at=released_at,
                    released_by=principal.subject,
                    role=principal.role.value,
                    organisation=principal.organisation,
                    recipient=params["recipient"],
                    purpose=params["purpose"],
                    legal_basis=params["legal_basis"],
                    legal_basis_reference=params["legal_basis_reference"],
                    contents=contents,
                    content_hash=content_hash,
                )
            )
            job = session.get(ExportJob, job_id)
            assert job is not None
            job.state, job.progress, job.manifest = "complete", None, manifest
            job.finished_at = released_at
        # The audit log's chained row names the release and its content hash.
        append_events(
            self.engine,
            [
                AuditEvent(
                    at=released_at,
                    actor=principal.subject,
                    role=principal.role.value,
                    organisation=principal.organisation,
                    patient_id=None,
                    action="release",
                    resource=f"DataRelease/{release_id} sha256:{content_hash}",
                    purpose=f"secondary-use:{params['legal_basis']}",
                    outcome=200,
                )
            ],
        )

    # ---- status and files ----------------------------------------------------------------

    def _own_job(self, session: Session, principal: Principal, job_id: str) -> ExportJob:
        job = session.get(ExportJob, job_id)
        # Only the client that asked reads the status and files (the IG's rule); to anyone
        # else the job does not exist.
        if job is None or job.requested_by != principal.subject or job.role != principal.role.value:
            raise NotFound(f"export {job_id} not found")
        return job

    def status(self, principal: Principal, job_id: str) -> ExportJob:
        with self.sessions() as session:
            job = self._own_job(session, principal, job_id)
            session.expunge(job)
            return job

    def file(self, principal: Principal, job_id: str, name: str) -> str:
        with self.sessions() as session:
            self._own_job(session, principal, job_id)
            content = session.scalar(
                select(ExportFile.content).where(
                    ExportFile.job_id == job_id, ExportFile.name == name
                )
            )
        if content is None:
            raise NotFound(f"file {name} of export {job_id} not found")
        return content

    def release(self, job_id: str) -> DataRelease | None:
        with self.sessions() as session:
            release = session.scalar(select(DataRelease).where(DataRelease.job_id == job_id))
            if release is not None:
                session.expunge(release)
            return release


def _as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value
