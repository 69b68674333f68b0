"""Idempotent FHIR ingestion: a resource, a batch (per-entry outcome) or a transaction (all or none).

A resource's identifier (or id, or failing both its content) is its key: a retried message returns
the stored id with 200 and creates nothing. The same key with different content is a 409.
Data, assessment, worklist update and outbox entry commit in one transaction.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.db.tables import Assessment, IngestedResource, Patient, Reading, ResourceVersion
from service.db.unit_of_work import UnitOfWork, lock_patients
from service.domain.scoring import ScoringService
from service.errors import BadRequest, Conflict, InvalidInput, TriageError
from service.fhir.parse import PARSERS, WITHDRAWN_STATUS, ParsedResource
from service.observability import Metrics
from service.security import visibility
from service.security.principal import Principal

MAX_BUNDLE_ENTRIES = 5000


@dataclass
class IngestOutcome:
    status: int  # 201 created, 200 already had it
    resource_type: str
    resource_id: str
    patient_id: str
    assessment_id: str | None = None
    version_id: int = 1
    last_updated: datetime | None = None  # when the server stored this version
    # The assessment made from the replaced version, superseded by the re-scoring.
    supersedes_assessment: str | None = None


class IngestionService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        scoring: ScoringService,
        metrics: Metrics,
        scoring_enabled: bool = True,
    ) -> None:
        self.sessions = sessions
        self.scoring = scoring
        self.metrics = metrics
        self.scoring_enabled = scoring_enabled
        # Every write: per-patient locks in one order, retried on deadlock (service.db.unit_of_work).
        self.unit_of_work = UnitOfWork(sessions)

    def parse(self, resource: Any, location_prefix: str = "") -> ParsedResource:
        if not isinstance(resource, dict):
            raise InvalidInput(
                "a FHIR resource (JSON object) is required", location=location_prefix or None
            )
        rtype = resource.get("resourceType")
        parser = PARSERS.get(rtype) if isinstance(rtype, str) else None
        if parser is None:
            raise InvalidInput(
                "resourceType must be Observation or QuestionnaireResponse",
                location=f"{location_prefix}resourceType",
            )
        try:
            return parser(resource, time.time())
        except TriageError as exc:
            if location_prefix and exc.location:
                # FHIRPath inside a Bundle: Bundle.entry[0].resource.identifier (the resource
                # type is not a step of the path).
                rest, own = exc.location, str(rtype)
                if rest == own or rest.startswith(f"{own}."):
                    rest = rest[len(own) + 1 :]
                exc.location = f"{location_prefix}{rest}".rstrip(".")
            raise

    def _resolve_patient(
        self, session: Session, principal: Principal, parsed: ParsedResource, loc: str
    ) -> Patient:
        """The enrolled patient the resource is about, inside the caller's organisations.

        Another organisation's patient gets exactly the answer of a subject that is not enrolled
        (same status, text and element), so a sender cannot probe who is enrolled elsewhere.
        """
        ref = parsed.subject
        if ref.patient_id:
            patient = session.get(Patient, ref.patient_id)
        else:
            # The system must match too: a felles hjelpenummer resolves only to a patient
            # enrolled with one, a fødselsnummer only to one enrolled with a fødselsnummer.
            patient = session.scalar(
                select(Patient).where(
                    Patient.identifier_value == ref.identifier_value,
                    Patient.identifier_system == ref.identifier_system,
                )
            )
        if patient is None or not visibility.may_change_patient(principal, patient):
            raise _not_enrolled(parsed, loc)
        return patient

    @staticmethod
    def _may_write_for(session: Session, principal: Principal, stored: IngestedResource) -> bool:
        owner = session.get(Patient, stored.patient_id)
        return owner is not None and visibility.may_change_patient(principal, owner)

    def _patients_to_lock(self, session: Session, parsed: list[ParsedResource]) -> set[str]:
        """The enrolled patients these resources are about (read before any lock or write)."""
        ids = {p.subject.patient_id for p in parsed if p.subject.patient_id}
        values = {p.subject.identifier_value for p in parsed if not p.subject.patient_id}
        values.discard(None)
        if values:
            ids |= set(
                session.scalars(select(Patient.id).where(Patient.identifier_value.in_(values)))
            )
        return {i for i in ids if i}

    def _received(self, session: Session, parsed: ParsedResource) -> IngestedResource | None:
        return session.scalar(
            select(IngestedResource).where(
                IngestedResource.idempotency_key == parsed.idempotency_key
            )
        )

    def _store(
        self, session: Session, principal: Principal, parsed: ParsedResource, loc: str = ""
    ) -> tuple[IngestOutcome, Patient | None]:
        """Store one parsed resource; returns the patient when new data arrived.

        The insert runs in a savepoint: when another replica committed the same key first (a
        sender's retry that reached the other replica), the unique violation is answered
        exactly as a retry is (200 with the stored id), and the surrounding transaction and
        the Bundle's other entries go on.
        """
        existing = self._received(session, parsed)
        if existing is None:
            try:
                with session.begin_nested():
                    return self._store_new(session, principal, parsed, loc)
            except IntegrityError:
                existing = self._received(session, parsed)
                if existing is None:
                    raise
        if not self._may_write_for(session, principal, existing):
            # Received before for a patient outside the caller's organisations: answer as for
            # any resource about that subject, never with the stored id.
            self._resolve_patient(session, principal, parsed, loc)
            raise Conflict(
                "a different resource with this identifier was already received",
                location=_element(loc, parsed.resource_type, "identifier"),
            )
        return self._store_version(session, principal, parsed, existing, loc)

    def _store_new(
        self, session: Session, principal: Principal, parsed: ParsedResource, loc: str
    ) -> tuple[IngestOutcome, Patient | None]:
        if parsed.withdrawn:
            raise InvalidInput(
                "nothing to withdraw: no resource with this identifier was received",
                location=_element(loc, parsed.resource_type, "identifier"),
            )
        patient = self._resolve_patient(session, principal, parsed, loc)
        stored = IngestedResource(
            id=str(uuid.uuid4()),
            resource_type=parsed.resource_type,
            idempotency_key=parsed.idempotency_key,
            content_hash=parsed.content_hash,
            patient_id=patient.id,
            body=parsed.body,
            received_at=datetime.now(UTC),
            received_by=principal.subject,
        )
        session.add(stored)
        session.add_all(
            Reading(
                patient_id=patient.id,
                resource_id=stored.id,
                name=name,
                value=value,
                effective_s=parsed.effective_s,
            )
            for name, value in parsed.readings
        )
        session.flush()
        self.metrics.ingested.labels(parsed.resource_type, "created").inc()
        return IngestOutcome(
            201, parsed.resource_type, stored.id, patient.id, last_updated=stored.received_at
        ), patient

    def _latest_version(
        self, session: Session, existing: IngestedResource
    ) -> tuple[int, str, str, datetime]:
        """(version, content hash, status, stored at) of the newest version of a resource."""
        row = session.execute(
            select(
                ResourceVersion.version_id,
                ResourceVersion.content_hash,
                ResourceVersion.status,
                ResourceVersion.received_at,
            )
            .where(ResourceVersion.resource_id == existing.id)
            .order_by(ResourceVersion.version_id.desc())
            .limit(1)
        ).first()
        if row is not None:
            return int(row[0]), str(row[1]), str(row[2]), row[3]
        status = str((existing.body or {}).get("status", "final"))
        return 1, existing.content_hash, status, existing.received_at

    def _store_version(
        self,
        session: Session,
        principal: Principal,
        parsed: ParsedResource,
        existing: IngestedResource,
        loc: str,
    ) -> tuple[IngestOutcome, Patient | None]:
        """A resend of a received resource: a retry, a new version, or a conflict."""
        version, digest, status, stored_at = self._latest_version(session, existing)
        if digest == parsed.content_hash:
            # A retry, or a resend that differs only in meta or narrative.
            self.metrics.ingested.labels(parsed.resource_type, "duplicate").inc()
            return IngestOutcome(
                200,
                existing.resource_type,
                existing.id,
                existing.patient_id,
                version_id=version,
                last_updated=stored_at,
            ), None
        if status == WITHDRAWN_STATUS:
            raise Conflict(
                "this resource was withdrawn (entered-in-error)",
                location=_element(loc, parsed.resource_type, "status"),
            )
        if not parsed.replaces:
            raise Conflict(
                "a different resource with this identifier was already received; send it with "
                "status corrected or amended to replace it, or entered-in-error to withdraw it",
                location=_element(loc, parsed.resource_type, "identifier"),
            )
        patient = self._resolve_patient(session, principal, parsed, loc)
        if patient.id != existing.patient_id:
            raise InvalidInput(
                "a new version cannot move the resource to another patient",
                location=_element(loc, parsed.resource_type, "subject"),
            )
        now = datetime.now(UTC)
        session.add(
            ResourceVersion(
                resource_id=existing.id,
                version_id=version + 1,
                status=parsed.status,
                content_hash=parsed.content_hash,
                body=parsed.body,
                received_at=now,
                received_by=principal.subject,
            )
        )
        # Readings are derived from the current version: the replaced values go (their bodies
        # stay on record as versions), the new ones come in; a withdrawal leaves none.
        session.execute(delete(Reading).where(Reading.resource_id == existing.id))
        if not parsed.withdrawn:
            session.add_all(
                Reading(
                    patient_id=patient.id,
                    resource_id=existing.id,
                    name=name,
                    value=value,
                    effective_s=parsed.effective_s,
                )
                for name, value in parsed.readings
            )
        session.flush()
        self.metrics.ingested.labels(parsed.resource_type, "new-version").inc()
        outcome = IngestOutcome(
            200,
            parsed.resource_type,
            existing.id,
            patient.id,
            version_id=version + 1,
            last_updated=now,
        )
        outcome.supersedes_assessment = session.scalar(
            select(Assessment.id)
            .where(Assessment.patient_id == patient.id)
            .order_by(Assessment.created_at.desc(), Assessment.id.desc())
            .limit(1)
        )
        return outcome, patient

    def _score(
        self,
        session: Session,
        patients: dict[str, Patient],
        supersedes: dict[str, str] | None = None,
    ) -> dict[str, str]:
        if not self.scoring_enabled:
            return {}
        assessed = {}
        for patient in patients.values():
            result = self.scoring.score(
                session,
                patient,
                trigger="ingestion",
                supersedes_id=(supersedes or {}).get(patient.id),
            )
            if result:
                assessed[patient.id] = result.assessment.id
        return assessed

    def conditional_matches(self, resource_type: str, criteria: str) -> list[str]:
        """Ids of stored resources matching an If-None-Exist query (`identifier=[system|]value`).

        The identifier is what the idempotency key is made of, so a match is exactly the
        resource a plain create would have answered 200 for.
        """
        from urllib.parse import parse_qsl

        try:
            pairs = parse_qsl(criteria, keep_blank_values=True, strict_parsing=True)
        except ValueError as exc:
            raise BadRequest(
                "If-None-Exist must be a search query", location="If-None-Exist"
            ) from exc
        if not pairs or any(name != "identifier" for name, _ in pairs):
            raise BadRequest(
                "If-None-Exist supports identifier=[system|]value only", location="If-None-Exist"
            )
        with self.sessions() as session:
            ids: set[str] | None = None
            for _, token in pairs:
                system, bar, value = token.partition("|")
                if not bar:
                    system, value = "", token
                if not value:
                    raise BadRequest(
                        "If-None-Exist: identifier needs a value", location="If-None-Exist"
                    )
                query = select(IngestedResource.id).where(
                    IngestedResource.resource_type == resource_type
                )
                if bar:
                    key = f"{resource_type}|{system}|{value}"[:300]
                    query = query.where(IngestedResource.idempotency_key == key)
                else:
                    query = query.where(
                        IngestedResource.idempotency_key.like(f"{resource_type}|%|{value}")
                    )
                found = set(session.scalars(query))
                ids = found if ids is None else ids & found
            return sorted(ids or ())

    def ingest(self, principal: Principal, resource: Any) -> IngestOutcome:
        parsed = self.parse(resource)

        def work(session: Session) -> IngestOutcome:
            lock_patients(session, self._patients_to_lock(session, [parsed]))
            outcome, patient = self._store(session, principal, parsed)
            if patient is not None:
                outcome.assessment_id = self._score(
                    session, {patient.id: patient}, _superseded([outcome])
                ).get(patient.id)
            return outcome

        try:
            return self.unit_of_work.run(work)
        except TriageError:
            self.metrics.ingested.labels(parsed.resource_type, "refused").inc()
            raise

    def ingest_bundle(self, principal: Principal, bundle: Any) -> dict[str, Any]:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise InvalidInput("resourceType must be Bundle", location="resourceType")
        kind = bundle.get("type")
        if kind not in ("batch", "transaction"):
            raise InvalidInput("Bundle.type must be batch or transaction", location="Bundle.type")
        entries = bundle.get("entry")
        if not isinstance(entries, list) or not entries:
            raise InvalidInput("Bundle.entry must hold at least one entry", location="Bundle.entry")
        if len(entries) > MAX_BUNDLE_ENTRIES:
            raise InvalidInput(
                f"a Bundle may hold at most {MAX_BUNDLE_ENTRIES} entries", location="Bundle.entry"
            )
        if kind == "transaction":
            return self._transaction(principal, entries)
        return self._batch(principal, entries)

    def _entry_resource(self, entry: Any, i: int) -> Any:
        loc = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict) or "resource" not in entry:
            raise InvalidInput("entry.resource is required", location=f"{loc}.resource")
        request = entry.get("request")
        if request is not None and (
            not isinstance(request, dict) or request.get("method") not in ("POST", "PUT")
        ):
            raise InvalidInput(
                "entry.request.method must be POST or PUT", location=f"{loc}.request.method"
            )
        return entry["resource"]

    def _transaction(self, principal: Principal, entries: list[Any]) -> dict[str, Any]:
        # Parse everything first: nothing is written unless every entry is valid.
        parsed = [
            self.parse(self._entry_resource(e, i), f"Bundle.entry[{i}].resource.")
            for i, e in enumerate(entries)
        ]

        def work(session: Session) -> tuple[list[IngestOutcome], dict[str, str]]:
            # Every patient of the Bundle, locked in one order before the first write.
            lock_patients(session, self._patients_to_lock(session, parsed))
            outcomes: list[IngestOutcome] = []
            touched: dict[str, Patient] = {}
            for i, p in enumerate(parsed):
                outcome, patient = self._store(session, principal, p, f"Bundle.entry[{i}].")
                outcomes.append(outcome)
                if patient is not None:
                    touched[patient.id] = patient
            return outcomes, self._score(session, touched, _superseded(outcomes))

        outcomes, assessed = self.unit_of_work.run(work)
        for o in outcomes:
            o.assessment_id = assessed.get(o.patient_id)
        return _response_bundle("transaction-response", [_entry_ok(o) for o in outcomes])

    def _batch(self, principal: Principal, entries: list[Any]) -> dict[str, Any]:
        # Parse first (outside the transaction): a refused entry has its outcome already, and
        # the patients of the valid ones are known before the first lock.
        parsed: list[ParsedResource | TriageError] = []
        for i, entry in enumerate(entries):
            try:
                parsed.append(
                    self.parse(self._entry_resource(entry, i), f"Bundle.entry[{i}].resource.")
                )
            except TriageError as exc:
                parsed.append(exc)
        valid = [p for p in parsed if not isinstance(p, TriageError)]

        def work(session: Session) -> list[dict[str, Any]]:
            lock_patients(session, self._patients_to_lock(session, valid))
            results: list[dict[str, Any]] = []
            touched: dict[str, Patient] = {}
            stored: list[IngestOutcome] = []
            for i, p in enumerate(parsed):
                if isinstance(p, TriageError):
                    results.append(_entry_error(p))
                    continue
                try:
                    with session.begin_nested():  # a savepoint per entry
                        outcome, patient = self._store(session, principal, p, f"Bundle.entry[{i}].")
                except TriageError as exc:
                    results.append(_entry_error(exc))
                    continue
                results.append(_entry_ok(outcome))
                stored.append(outcome)
                if patient is not None:
                    touched[patient.id] = patient
            self._score(session, touched, _superseded(stored))
            return results

        return _response_bundle("batch-response", self.unit_of_work.run(work))


def _not_enrolled(parsed: ParsedResource, loc: str) -> InvalidInput:
    # Never echo the identifier: it may be a fødselsnummer.
    return InvalidInput(
        "subject is not an enrolled patient",
        location=_element(loc, parsed.resource_type, "subject"),
    )


def _superseded(outcomes: list[IngestOutcome]) -> dict[str, str]:
    """Patient id -> the assessment that a new version of its data supersedes."""
    return {o.patient_id: o.supersedes_assessment for o in outcomes if o.supersedes_assessment}


def _element(entry_loc: str, resource_type: str, element: str) -> str:
    """FHIRPath of an element: `Observation.identifier`, or inside a Bundle entry
    `Bundle.entry[0].resource.identifier`."""
    return f"{entry_loc}resource.{element}" if entry_loc else f"{resource_type}.{element}"


def _entry_ok(o: IngestOutcome) -> dict[str, Any]:
    response: dict[str, Any] = {
        "status": "201 Created" if o.status == 201 else "200 OK",
        "location": f"{o.resource_type}/{o.resource_id}/_history/{o.version_id}",
        "etag": f'W/"{o.version_id}"',
    }
    if o.last_updated is not None:
        stamp = o.last_updated if o.last_updated.tzinfo else o.last_updated.replace(tzinfo=UTC)
        response["lastModified"] = stamp.isoformat()
    return {"response": response}


def _entry_error(exc: TriageError) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": exc.code, "diagnostics": exc.message}
    if exc.location:
        issue["expression"] = [exc.location]
    return {
        "response": {
            "status": f"{exc.status_code}",
            "outcome": {"resourceType": "OperationOutcome", "issue": [issue]},
        }
    }


def _response_bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": kind, "entry": entries}
