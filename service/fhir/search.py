"""FHIR R4 read and search over what the service stores: parameters, visibility, paging, includes.

Routes in service/api/fhir.py only translate HTTP; this module parses a search the way a FHIR
server does (FHIR R4 §3.1.1 "Search"), builds the query, filters it through what the caller may
see, and assembles the searchset Bundle with absolute fullUrls, the real total and _include'd
resources. The parameters declared here are the CapabilityStatement's (it is derived from them).

Handling of parameters the server does not support follows the `Prefer: handling=` header:
`strict` answers 400 with an OperationOutcome naming the parameter, `lenient` (the default)
ignores it and leaves it out of the Bundle's self link, so the client can see what was applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from models.identifiers import PERSON_SYSTEMS
from service.db.tables import (
    Assessment,
    IngestedResource,
    Patient,
    ResourceVersion,
    WorklistItem,
)
from service.errors import BadRequest, InvalidInput, NotFound
from service.fhir import outputs
from service.security.principal import Principal
from service.security.visibility import patient_filter

DEFAULT_COUNT, MAX_COUNT = 50, 500
MAX_OFFSET = 10_000_000
# Parameters every search accepts (result shaping, not filters).
COMMON = {
    "_count": ("number", "page size (default 50, max 500)"),
    "_offset": ("number", "paging position (the next links carry it)"),
    "_lastUpdated": ("date", "eq|gt|ge|lt|le prefix, a date or a dateTime, e.g. ge2026-01-01"),
    "_include": ("special", "see searchInclude"),
    "_format": ("special", "json only"),
}
_PATIENT_REF = ("reference", "Patient/{id}")
_PATIENT_IDENT = (
    "token",
    "the patient's fødselsnummer, D-number or felles hjelpenummer: "
    "urn:oid:2.16.578.1.12.4.1.4.1|<11 digits>",
)
# Per searchable type: parameter -> (FHIR search type, documentation).
PARAMETERS: dict[str, dict[str, tuple[str, str]]] = {
    "RiskAssessment": {
        "subject": _PATIENT_REF,
        "patient": _PATIENT_REF,
        "subject:identifier": _PATIENT_IDENT,
        "patient:identifier": _PATIENT_IDENT,
        "subject.identifier": _PATIENT_IDENT,
        "patient.identifier": _PATIENT_IDENT,
    },
    "Task": {
        "status": ("token", "requested | accepted | in-progress | completed (comma for several)"),
        "subject": _PATIENT_REF,
        "patient": _PATIENT_REF,
        "subject:identifier": _PATIENT_IDENT,
        "patient:identifier": _PATIENT_IDENT,
        "subject.identifier": _PATIENT_IDENT,
        "patient.identifier": _PATIENT_IDENT,
    },
    "DetectedIssue": {
        "patient": _PATIENT_REF,
        "patient:identifier": _PATIENT_IDENT,
        "patient.identifier": _PATIENT_IDENT,
    },
}
INCLUDES: dict[str, dict[str, str]] = {
    "RiskAssessment": {
        "RiskAssessment:subject": "Patient",
        "RiskAssessment:patient": "Patient",
        "RiskAssessment:basis": "Observation",
    },
    "Task": {"Task:patient": "Patient", "Task:subject": "Patient", "Task:focus": "RiskAssessment"},
    "DetectedIssue": {
        "DetectedIssue:patient": "Patient",
        "DetectedIssue:implicated": "RiskAssessment",
    },
}
READABLE = (
    "Observation",
    "QuestionnaireResponse",
    "RiskAssessment",
    "Task",
    "DetectedIssue",
    "Patient",
)
_DATE = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})(T(?P<time>\d{2}:\d{2}(:\d{2}(\.\d+)?)?)"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_PREFIXES = ("eq", "gt", "ge", "lt", "le")


@dataclass
class Search:
    """A parsed FHIR search: what is applied, and what was ignored (lenient handling)."""

    resource_type: str
    patient_refs: list[str] = field(default_factory=list)
    patient_identifiers: list[tuple[str | None, str]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    last_updated: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    applied: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def names_patient(self) -> bool:
        return bool(self.patient_refs or self.patient_identifiers)


def strict_handling(prefer: str | None) -> bool:
    """`Prefer: handling=strict` (FHIR R4 §3.1.1.5.7); lenient is the default."""
    for part in (prefer or "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "handling" and value.strip().strip('"').lower() == "strict":
            return True
    return False


def parse_search(resource_type: str, items: list[tuple[str, str]], strict: bool) -> Search:
    """Parse query parameters; unknown ones are a 400 (strict) or ignored (lenient)."""
    allowed = PARAMETERS[resource_type]
    search = Search(resource_type)
    for name, value in items:
        if name in ("_count", "_offset"):
            number = _integer(name, value)
            if name == "_count":
                # _count=0 asks for the total only (FHIR R4 §3.1.1.5.4).
                search.count = min(number, MAX_COUNT)
            else:
                _check(0 <= number <= MAX_OFFSET, f"_offset must be 0–{MAX_OFFSET}", name)
                search.offset = number
            continue  # the paging links set these themselves
        if name == "_format":
            _check(
                value in ("json", "application/json", "application/fhir+json"),
                "only JSON is served",
                name,
            )
        elif name == "_lastUpdated":
            search.last_updated.append(parse_date_param(value, name))
        elif name == "_include":
            if value not in INCLUDES[resource_type]:
                if strict:
                    raise BadRequest(
                        f"_include={value} is not supported; supported: "
                        + ", ".join(sorted(INCLUDES[resource_type])),
                        location=name,
                    )
                search.ignored.append(f"{name}={value}")
                continue
            search.includes.append(value)
        elif name in allowed:
            kind = allowed[name][0]
            if kind == "reference":
                search.patient_refs.append(_patient_reference(value, name))
            elif name == "status":
                search.statuses += _statuses(value, name)
            else:
                search.patient_identifiers.append(_identifier_token(value, name))
        else:
            if strict:
                raise BadRequest(
                    f"search parameter '{name}' is not supported on {resource_type}; supported: "
                    + ", ".join(sorted(set(allowed) | set(COMMON))),
                    location=name,
                )
            search.ignored.append(name)
            continue
        search.applied.append((name, value))
    return search


def _check(cond: bool, message: str, location: str) -> None:
    if not cond:
        raise BadRequest(message, location=location)


def _integer(name: str, value: str) -> int:
    _check(
        value.isascii() and value.isdigit() and len(value) < 10, f"{name} must be a number", name
    )
    return int(value)


def _patient_reference(value: str, name: str) -> str:
    """`Patient/X`, an absolute `…/Patient/X`, or a bare id (FHIR allows all three)."""
    pid = value.rsplit("Patient/", 1)[-1] if "Patient/" in value else value
    _check(
        bool(pid) and "/" not in pid and len(pid) <= 64 and pid.isascii(),
        f"{name} must be Patient/<id>",
        name,
    )
    return pid


def _identifier_token(value: str, name: str) -> tuple[str | None, str]:
    system, bar, code = value.partition("|")
    if not bar:
        system, code = "", value
    _check(
        not system or system in PERSON_SYSTEMS,
        f"{name}: the system must be the fødselsnummer, D-number or felles hjelpenummer OID",
        name,
    )
    _check(
        len(code) == 11 and code.isascii() and code.isdigit(),
        f"{name}: the value must be 11 digits",
        name,
    )
    return (system or None), code


def _statuses(value: str, name: str) -> list[str]:
    wanted = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in outputs.STATUS_TO_STATE]
    if unknown:
        raise InvalidInput(f"unsupported Task status {unknown[0]!r}", location=name)
    return wanted


def parse_date_param(value: str, name: str = "_lastUpdated") -> tuple[str, datetime, datetime]:
    """(prefix, start, end) of a FHIR date search value; the range covers its precision."""
    prefix, stamp = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
    _check(prefix in _PREFIXES, f"{name}: prefix must be one of {', '.join(_PREFIXES)}", name)
    match = _DATE.match(stamp)
    _check(
        match is not None,
        f"{name} must be a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime "
        "with a zone), with an optional eq/gt/ge/lt/le prefix",
        name,
    )
    assert match is not None
    try:
        year = int(match["y"])
        if match["m"] is None:
            start = datetime(year, 1, 1, tzinfo=UTC)
            end = datetime(year + 1, 1, 1, tzinfo=UTC)
        elif match["d"] is None:
            start = datetime(year, int(match["m"]), 1, tzinfo=UTC)
            end = (start + timedelta(days=32)).replace(day=1)
        elif match["time"] is None:
            start = datetime(year, int(match["m"]), int(match["d"]), tzinfo=UTC)
            end = start + timedelta(days=1)
        else:
            _check(match["tz"] is not None, f"{name}: a dateTime needs a time zone", name)
            start = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
            seconds = match["time"].count(":") == 2
            fraction = "." in match["time"]
            # The value's own precision: to the minute, the second or the fraction given.
            step = (
                timedelta(microseconds=1)
                if fraction
                else timedelta(seconds=1)
                if seconds
                else timedelta(minutes=1)
            )
            end = start + step
    except (ValueError, OverflowError) as exc:  # 0001-01-01T00:00:00+14:00 is before year 1 UTC
        raise BadRequest(f"{name}: {value!r} is not a valid date", location=name) from exc
    return prefix, start, end


def date_conditions(column: Any, ranges: list[tuple[str, datetime, datetime]]) -> list[Any]:
    """FHIR R4 §3.1.1.4.2: eq = within the value's range, gt/ge/lt/le against its bounds."""
    out = []
    for prefix, start, end in ranges:
        out.append(
            {
                "eq": (column >= start) & (column < end),
                "gt": column >= end,
                "ge": column >= start,
                "lt": column < start,
                "le": column < end,
            }[prefix]
        )
    return out


def visible_patients(query: Any, principal: Principal) -> Any:
    """Only patients the caller may see (service.security.visibility decides; the query joins
    Patient)."""
    return query.where(patient_filter(principal))


def _patient_filter(query: Any, column: Any, search: Search) -> Any:
    for pid in search.patient_refs:
        query = query.where(column == pid)
    for system, value in search.patient_identifiers:
        query = query.where(Patient.identifier_value == value)
        if system:
            query = query.where(Patient.identifier_system == system)
    return query


@dataclass
class Page:
    resources: list[dict[str, Any]]
    included: list[dict[str, Any]]
    total: int
    patient_ids: set[str]


class FhirReader:
    """Reads and searches for one request's caller."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    # ---- searches --------------------------------------------------------------------

    def search(self, search: Search) -> Page:
        runner: Callable[[Search], Page] = {
            "RiskAssessment": self._risk_assessments,
            "Task": self._tasks,
            "DetectedIssue": self._detected_issues,
        }[search.resource_type]
        return runner(search)

    def _assessment_query(self, search: Search) -> Any:
        query: Any = select(Assessment, Patient).join(Patient, Patient.id == Assessment.patient_id)
        query = visible_patients(query, self.principal)
        query = _patient_filter(query, Assessment.patient_id, search)
        return query.where(*date_conditions(Assessment.created_at, search.last_updated)).order_by(
            Assessment.created_at.desc(), Assessment.id
        )

    def _count_and_page(self, query: Any, search: Search) -> tuple[list[Any], int]:
        total = int(
            self.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
            or 0
        )
        rows = self.session.execute(query.limit(search.count).offset(search.offset)).all()
        return list(rows), total

    def _risk_assessments(self, search: Search) -> Page:
        rows, total = self._count_and_page(self._assessment_query(search), search)
        resources = self._risk_resources(rows)
        included = self._include(search, resources, {p.id: p for _, p in rows})
        return Page(resources, included, total, {p.id for _, p in rows})

    def _risk_resources(self, rows: list[Any]) -> list[dict[str, Any]]:
        basis_ids = {b for a, _ in rows for b in a.basis}
        types = self._resource_types(basis_ids)
        superseded = self._superseded({a.id for a, _ in rows})
        return [
            outputs.risk_assessment(a, p, types, superseded_by=superseded.get(a.id))
            for a, p in rows
        ]

    def _resource_types(self, ids: set[str]) -> dict[str, str]:
        if not ids:
            return {}
        return dict(
            self.session.execute(
                select(IngestedResource.id, IngestedResource.resource_type).where(
                    IngestedResource.id.in_(ids)
                )
            ).all()
        )

    def _superseded(self, ids: set[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = self.session.execute(
            select(Assessment.supersedes_id, Assessment.id).where(Assessment.supersedes_id.in_(ids))
        ).all()
        return {str(old): str(new) for old, new in rows}

    def _tasks(self, search: Search) -> Page:
        query: Any = (
            select(WorklistItem, Patient, Assessment)
            .join(Patient, Patient.id == WorklistItem.patient_id)
            .join(Assessment, Assessment.id == WorklistItem.assessment_id)
        )
        query = visible_patients(query, self.principal)
        query = _patient_filter(query, WorklistItem.patient_id, search)
        if search.statuses:
            query = query.where(
                WorklistItem.state.in_([outputs.STATUS_TO_STATE[s] for s in search.statuses])
            )
        query = query.where(
            *date_conditions(WorklistItem.updated_at, search.last_updated)
        ).order_by(
            WorklistItem.level_rank,
            WorklistItem.probability.desc(),
            WorklistItem.opened_at,
            WorklistItem.id,
        )
        rows, total = self._count_and_page(query, search)
        resources = [outputs.task(i, p, a) for i, p, a in rows]
        included = self._include(search, resources, {p.id: p for _, p, _ in rows})
        return Page(resources, included, total, {p.id for _, p, _ in rows})

    def _detected_issues(self, search: Search) -> Page:
        # One DetectedIssue per fired rule of an assessment: expand, then page over the issues
        # so that _count and total count issues, not assessments.
        query = self._assessment_query(search).where(Assessment.level != "green")
        issues: list[dict[str, Any]] = []
        patients: dict[str, Patient] = {}
        for assessment, patient in self.session.execute(query).all():
            found = outputs.detected_issues(assessment, patient)
            if found:
                patients[patient.id] = patient
                issues += found
        page = issues[search.offset : search.offset + search.count]
        included = self._include(search, page, patients)
        pids = {i["patient"]["reference"].removeprefix("Patient/") for i in page}
        return Page(page, included, len(issues), pids)

    # ---- _include ------------------------------------------------------------------

    def _include(
        self, search: Search, resources: list[dict[str, Any]], patients: dict[str, Patient]
    ) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for include in search.includes:
            target = INCLUDES[search.resource_type][include]
            refs: set[str] = set()
            for r in resources:
                if target == "Patient":
                    ref = (r.get("subject") or r.get("for") or r.get("patient") or {}).get(
                        "reference", ""
                    )
                    refs.add(ref)
                elif include.endswith(":basis"):
                    refs |= {b["reference"] for b in r.get("basis", [])}
                elif include.endswith(":focus"):
                    refs.add(r["focus"]["reference"])
                elif include.endswith(":implicated"):
                    refs |= {x["reference"] for x in r.get("implicated", [])}
            for ref in sorted(refs):
                if ref and ref not in out:
                    rtype, _, rid = ref.partition("/")
                    if rtype == "Patient" and rid in patients:
                        out[ref] = outputs.patient(patients[rid])
                        continue
                    try:
                        out[ref] = self.read(rtype, rid)
                    except NotFound:
                        continue  # withdrawn from view: an include never fails the search
        return list(out.values())

    # ---- reads ---------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """The current version of one resource the caller may see; NotFound otherwise."""
        if resource_type in ("Observation", "QuestionnaireResponse"):
            return self._read_received(resource_type, resource_id)
        if resource_type == "Patient":
            patient = self._visible_patient(resource_id)
            return outputs.patient(patient)
        if resource_type == "RiskAssessment":
            row = self._visible_assessment(resource_id)
            return self._risk_resources([row])[0]
        if resource_type == "Task":
            query: Any = (
                select(WorklistItem, Patient, Assessment)
                .join(Patient, Patient.id == WorklistItem.patient_id)
                .join(Assessment, Assessment.id == WorklistItem.assessment_id)
                .where(WorklistItem.id == resource_id)
            )
            found = self.session.execute(visible_patients(query, self.principal)).first()
            if found is None:
                raise NotFound(f"Task/{resource_id} is not known")
            return outputs.task(*found)
        if resource_type == "DetectedIssue":
            assessment_id, _, index = resource_id.rpartition("-")
            if not index.isdigit():
                raise NotFound(f"DetectedIssue/{resource_id} is not known")
            assessment, patient = self._visible_assessment(assessment_id)
            for issue in outputs.detected_issues(assessment, patient):
                if issue["id"] == resource_id:
                    return issue
            raise NotFound(f"DetectedIssue/{resource_id} is not known")
        raise NotFound(f"{resource_type} is not a type this server reads")

    def _visible_patient(self, patient_id: str) -> Patient:
        query = visible_patients(select(Patient).where(Patient.id == patient_id), self.principal)
        patient = self.session.scalar(query)
        if patient is None:
            raise NotFound(f"Patient/{patient_id} is not known")
        return patient

    def _visible_assessment(self, assessment_id: str) -> Any:
        query: Any = (
            select(Assessment, Patient)
            .join(Patient, Patient.id == Assessment.patient_id)
            .where(Assessment.id == assessment_id)
        )
        found = self.session.execute(visible_patients(query, self.principal)).first()
        if found is None:
            raise NotFound(f"RiskAssessment/{assessment_id} is not known")
        return found

    def _read_received(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        query: Any = (
            select(IngestedResource)
            .join(Patient, Patient.id == IngestedResource.patient_id)
            .where(
                IngestedResource.id == resource_id,
                IngestedResource.resource_type == resource_type,
            )
        )
        stored = self.session.scalar(visible_patients(query, self.principal))
        if stored is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        latest = self.session.scalar(
            select(ResourceVersion)
            .where(ResourceVersion.resource_id == stored.id)
            .order_by(ResourceVersion.version_id.desc())
            .limit(1)
        )
        if latest is None:
            return outputs.stored_resource(stored.body, stored.id, 1, stored.received_at)
        return outputs.stored_resource(
            latest.body, stored.id, latest.version_id, latest.received_at
        )

    def patient_ids_of_identifier(self, search: Search) -> set[str]:
        """The patients an identifier search named (for the audit trail)."""
        if not search.patient_identifiers:
            return set()
        values = [v for _, v in search.patient_identifiers]
        return set(
            self.session.scalars(
                visible_patients(
                    select(Patient.id).where(or_(*(Patient.identifier_value == v for v in values))),
                    self.principal,
                )
            )
        )


def searchset(
    base: str,
    search: Search,
    page: Page,
) -> dict[str, Any]:
    """The searchset Bundle: absolute fullUrls, the real total, self/next/previous links."""
    path = f"{base}/{search.resource_type}"
    applied = list(search.applied)

    def url(offset: int) -> str:
        return f"{path}?" + urlencode(
            [*applied, ("_count", str(search.count)), ("_offset", str(offset))]
        )

    links = [{"relation": "self", "url": url(search.offset)}]
    if search.count and search.offset + search.count < page.total:
        links.append({"relation": "next", "url": url(search.offset + search.count)})
    if search.offset > 0 and search.count:
        links.append({"relation": "previous", "url": url(max(0, search.offset - search.count))})
    entries = [
        {
            "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in page.resources
    ]
    entries += [
        {
            "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "include"},
        }
        for r in page.included
    ]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": links,
        "entry": entries,
    }
    return bundle


# Operations we serve and the OperationDefinition each one implements (FHIR Bulk Data Access).
_BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
_OPERATION_DEFINITIONS = {
    ("", "export"): f"{_BULK}/export",
    ("Group", "export"): f"{_BULK}/group-export",
}


def _operation(owner: str, name: str) -> dict[str, str]:
    definition = _OPERATION_DEFINITIONS.get(
        (owner, name), f"https://triage.example.org/fhir/OperationDefinition/{name}"
    )
    return {"name": name, "definition": definition}


def capability_statement(
    base_url: str,
    software_version: str,
    routes: list[tuple[str, str]],
) -> dict[str, Any]:
    """What this server does, derived from its routes: (method, path) pairs under /fhir.

    A type gets `create` (and conditionalCreate, since If-None-Exist is honoured) for a POST
    route, `search-type` with the parameters of PARAMETERS for a GET on the type, and `read`
    for a GET on /fhir/{type}/{id}; the system gets batch and transaction for POST /fhir.
    """
    per_type: dict[str, set[str]] = {}
    system: set[str] = set()
    operations: dict[str, set[str]] = {}  # "" for the system level, else the resource type
    for method, path in routes:
        parts = [p for p in path.removeprefix("/fhir").split("/") if p]
        if not parts:
            if method == "POST":
                system |= {"batch", "transaction"}
            continue
        named = [p for p in parts if p.startswith("$")]
        if named:  # an operation, e.g. $export or Group/{id}/$export
            owner = parts[0] if parts[0][:1].isupper() else ""
            operations.setdefault(owner, set()).add(named[0][1:])
            continue
        rtype = parts[0]
        if rtype == "metadata" or not rtype[:1].isupper():
            continue
        if len(parts) == 1 and method == "POST":
            per_type.setdefault(rtype, set()).add("create")
        elif len(parts) == 1 and method == "GET":
            per_type.setdefault(rtype, set()).add("search-type")
        elif len(parts) == 2 and parts[1].startswith("{") and method == "GET":
            per_type.setdefault(rtype, set()).add("read")
    resources = []
    for rtype in sorted(set(per_type) | {t for t in operations if t}):
        kinds = per_type.get(rtype, set())
        entry: dict[str, Any] = {"type": rtype}
        if kinds:
            entry["interaction"] = [
                {"code": k} for k in ("read", "create", "search-type") if k in kinds
            ]
        if operations.get(rtype):
            entry["operation"] = [_operation(rtype, name) for name in sorted(operations[rtype])]
        if "read" in kinds:
            entry["versioning"] = "versioned"
            entry["readHistory"] = False
        if "create" in kinds:
            entry["conditionalCreate"] = True
            entry["documentation"] = (
                "identifier is the idempotency key; a resend with status corrected or amended is "
                "the next version, entered-in-error withdraws; If-None-Exist: identifier=s|v"
            )
        if "search-type" in kinds:
            params = {**PARAMETERS.get(rtype, {}), **COMMON}
            entry["searchParam"] = [
                {"name": name, "type": kind, "documentation": doc}
                for name, (kind, doc) in params.items()
                if kind != "special"
            ]
            entry["searchInclude"] = sorted(INCLUDES.get(rtype, {}))
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "security": {
            "cors": False,
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/"
                            "restful-security-service",
                            "code": "OAuth",
                        }
                    ]
                }
            ],
            "description": "OAuth2 bearer tokens from HelseID (JWT, JWKS-verified)",
        },
        "resource": resources,
    }
    if system:
        rest["interaction"] = [{"code": k} for k in sorted(system)]
    if operations.get(""):
        rest["operation"] = [_operation("", name) for name in sorted(operations[""])]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "home-followup-triage", "version": software_version},
        "implementation": {"description": "Triage for digital home follow-up", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [rest],
    }
