"""The FHIR transaction Bundle for one worklist event: Task + RiskAssessment (+ DetectedIssues).

Every entry is a conditional update on a business identifier (`PUT Task?identifier=...`), so a
redelivered Bundle updates what the first delivery created instead of creating it again. DIPS
does not know our ids: the patient is referenced by fødselsnummer/D-number, the observations in
`basis` by the identifiers their senders gave them, and the entries refer to each other by
`urn:uuid:` full URLs that the receiving server rewrites.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from service.db.tables import Assessment, Patient, WorklistItem
from service.fhir import outputs

CODE_SYSTEM = outputs.CODE_SYSTEM
TASK_IDENTIFIER_SYSTEM = f"{CODE_SYSTEM}/worklist-item"  # as outputs.task sets it
RISK_IDENTIFIER_SYSTEM = f"{CODE_SYSTEM}/risk-assessment"
ISSUE_IDENTIFIER_SYSTEM = f"{CODE_SYSTEM}/detected-issue"
MESSAGE_IDENTIFIER_SYSTEM = f"{CODE_SYSTEM}/outbox-message"
RECEIVED_IDENTIFIER_SYSTEM = f"{CODE_SYSTEM}/ingested-resource"
EVENT_SYSTEM = f"{CODE_SYSTEM}/worklist-event"
_URN_NAMESPACE = uuid.UUID("0b6f0c1e-8a57-4a5e-b1a4-4f7bd3c1e2a9")


def patient_reference(patient: Patient) -> dict[str, Any]:
    return {
        "type": "Patient",
        "identifier": {"system": patient.identifier_system, "value": patient.identifier_value},
    }


def basis_reference(resource_id: str, resource_type: str, idempotency_key: str) -> dict[str, Any]:
    """A logical reference by the sender's own identifier (VKP's), else by our receipt id.

    The idempotency key already holds "<type>|<system>|<value>" of the sender's identifier
    ("<type>|id|…" or "<type>|sha256|…" when it had none), so no stored body is parsed here.
    """
    _, system, value = [*idempotency_key.split("|", 2), "", ""][:3]
    if system and value and system not in ("id", "sha256"):
        return {"type": resource_type, "identifier": {"system": system, "value": value}}
    return {
        "type": resource_type,
        "identifier": {"system": RECEIVED_IDENTIFIER_SYSTEM, "value": resource_id},
    }


def _conditional(
    resource: dict[str, Any], system: str, value: str, full_url: str
) -> dict[str, Any]:
    resource.pop("id", None)  # the receiver assigns its own ids
    resource["identifier"] = [{"system": system, "value": value}]
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {
            "method": "PUT",
            "url": f"{resource['resourceType']}?identifier={system}|{value}",
        },
    }


def transaction_bundle(
    item: WorklistItem,
    patient: Patient,
    assessment: Assessment,
    event: str,
    basis: list[dict[str, Any]],
    message_id: str | None = None,
) -> dict[str, Any]:
    """The Bundle DIPS receives for one item event (opened | level-changed | resolved)."""
    risk_url = f"urn:uuid:{assessment.id}"
    risk = outputs.risk_assessment(assessment, patient)
    risk["subject"] = patient_reference(patient)
    risk["basis"] = basis
    entries = [_conditional(risk, RISK_IDENTIFIER_SYSTEM, assessment.id, risk_url)]
    for issue in outputs.detected_issues(assessment, patient):
        issue_id = issue["id"]
        issue["patient"] = patient_reference(patient)
        issue["implicated"] = [{"reference": risk_url}]
        entries.append(
            _conditional(
                issue,
                ISSUE_IDENTIFIER_SYSTEM,
                issue_id,
                f"urn:uuid:{uuid.uuid5(_URN_NAMESPACE, issue_id)}",
            )
        )
    task = outputs.task(item, patient, assessment)
    task["for"] = patient_reference(patient)
    task["focus"] = {"reference": risk_url}
    entries.append(_conditional(task, TASK_IDENTIFIER_SYSTEM, item.id, f"urn:uuid:{item.id}"))
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "identifier": {
            "system": MESSAGE_IDENTIFIER_SYSTEM,
            "value": message_id or str(uuid.uuid4()),
        },
        "meta": {"tag": [{"system": EVENT_SYSTEM, "code": event}]},
        "timestamp": datetime.now(UTC).isoformat(),
        "entry": entries,
    }
