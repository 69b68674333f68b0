"""Personal identifiers never reach logs, metrics, audit rows or error messages.

A realistic flow (enrol, ingest by identifier, retries, bad input carrying the fødselsnummer,
lookups by it, errors) runs while every log record is captured; then the log lines (raw and as
emitted), /metrics, the audit log and every error body are scanned for 11-digit runs.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from models.identifiers import FNR_SYSTEM, PERSON_NUMBER_PATTERN
from service.observability import JsonFormatter
from tests.helpers import FNR_ADULT, enrol, observation, post_fhir
from tests.service.security.conftest import flush_audit, make_fnr

# The one pattern of models/identifiers.py: every written form, not only 11 digits in a row.
ELEVEN_DIGITS = PERSON_NUMBER_PATTERN


def _by_identifier(resource: dict[str, Any], fnr: str) -> dict[str, Any]:
    resource["subject"] = {"identifier": {"system": FNR_SYSTEM, "value": fnr}}
    return resource


def test_no_identifier_leaves_the_process(
    client: Any, auth: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    integration, nurse = auth("integration"), auth("clinician")
    unknown = make_fnr(date(1970, 5, 17), 200)
    bad_check = FNR_ADULT[:-1] + str((int(FNR_ADULT[-1]) + 1) % 10)
    now = datetime.now(UTC)
    errors: list[Any] = []

    def call(response: Any) -> Any:
        if response.status_code >= 400:
            errors.append(response)
        elif isinstance(response.json(), dict) and response.json().get("type") in (
            "batch-response",
            "transaction-response",
        ):
            outcomes = [e["response"].get("outcome") for e in response.json()["entry"]]
            if any(outcomes):
                errors.append(response)
        return response

    patient = enrol(client, integration)
    call(
        client.post(
            "/api/v1/patients",
            headers=integration,
            json={
                "identifier": FNR_ADULT,
                "birth_date": "1965-07-15",
                "sex": "female",
                "pathway": "copd",
                "organisation": "983974899",
                "unit": "lungs",
            },
        )
    )  # 409 duplicate
    for identifier, birth in (
        (bad_check, "1965-07-15"),
        (FNR_ADULT, "1966-01-01"),
        (unknown, "1970-05-17"),
    ):
        call(
            client.post(
                "/api/v1/patients",
                headers=integration,
                json={
                    "identifier": identifier,
                    "birth_date": birth,
                    "sex": "female",
                    "pathway": "nope",
                    "organisation": FNR_ADULT,
                    "unit": FNR_ADULT,
                },
            )
        )
    for i in range(3):
        obs = _by_identifier(
            observation(patient["id"], "spo2", 90 - i, now - timedelta(hours=i), f"leak-{i}"),
            FNR_ADULT,
        )
        assert call(post_fhir(client, "/fhir/Observation", obs, integration)).status_code == 201
    call(
        post_fhir(
            client,
            "/fhir/Observation",
            _by_identifier(  # unknown person
                observation(patient["id"], "spo2", 90, now, "leak-x"), unknown
            ),
            integration,
        )
    )
    garbled = observation(patient["id"], "heart_rate", 80, now, FNR_ADULT)
    garbled["valueQuantity"]["value"] = FNR_ADULT
    garbled["effectiveDateTime"] = FNR_ADULT
    garbled["code"]["coding"][0]["code"] = FNR_ADULT
    call(post_fhir(client, "/fhir/Observation", garbled, integration))
    call(
        post_fhir(
            client,
            "/fhir",
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"resource": garbled},
                    {
                        "resource": _by_identifier(
                            observation(patient["id"], "spo2", 91, now, "leak-t"), unknown
                        )
                    },
                ],
            },
            integration,
        )
    )
    call(
        post_fhir(
            client,
            "/fhir",
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"resource": garbled}, {"resource": {"resourceType": FNR_ADULT}}],
            },
            integration,
        )
    )
    call(
        client.post(
            "/fhir/Observation",
            content=f'{{"id": "{FNR_ADULT}"'.encode(),
            headers={**integration, "Content-Type": "application/fhir+json"},
        )
    )
    call(client.get(f"/api/v1/patients/{FNR_ADULT}", headers=nurse))
    call(client.get(f"/api/v1/patients/{FNR_ADULT}/assessments", headers=nurse))
    call(client.get(f"/fhir/RiskAssessment?subject=Patient/{FNR_ADULT}", headers=nurse))
    call(client.get(f"/fhir/Task?patient={FNR_ADULT}&_lastUpdated={FNR_ADULT}", headers=nurse))
    call(client.get(f"/api/v1/worklist?unit={FNR_ADULT}", headers=nurse))
    call(
        client.post(f"/api/v1/worklist/{FNR_ADULT}/acknowledge", headers=nurse, json={"note": "ok"})
    )
    call(
        client.get(
            f"/api/v1/patients/{patient['id']}", headers={"Authorization": f"Bearer {FNR_ADULT}"}
        )
    )
    assert client.get("/api/v1/worklist", headers=nurse).status_code == 200
    flush_audit(client)
    audit = client.get("/api/v1/audit", params={"limit": 1000}, headers=auth("compliance"))
    metrics = client.get("/metrics").text

    assert len(errors) >= 12, "the flow should have produced many refusals"
    leaks = []
    formatter = JsonFormatter()
    for record in caplog.records:
        if record.name.startswith(("httpx", "httpcore")):
            continue  # the test's own HTTP client logging its request lines, not the service
        raw = record.getMessage() + json.dumps(getattr(record, "fields", {}), default=str)
        if ELEVEN_DIGITS.search(raw):
            leaks.append(f"log record {record.name}: {raw[:200]}")
        if ELEVEN_DIGITS.search(formatter.format(record)):
            leaks.append(f"emitted log line {record.name}")
    for response in errors:
        if ELEVEN_DIGITS.search(response.text):
            leaks.append(
                f"error {response.status_code} {response.request.method} "
                f"{response.request.url.path}: {response.text[:200]}"
            )
    if ELEVEN_DIGITS.search(metrics):
        leaks.append("/metrics")
    # Hex hashes can hold 11-digit runs by chance; every other audit field is scanned.
    rows = [
        {k: v for k, v in e.items() if k not in ("hash", "prev_hash")}
        for e in audit.json()["entries"]
    ]
    if ELEVEN_DIGITS.search(json.dumps(rows)):
        leaks.append(f"audit log: {ELEVEN_DIGITS.findall(json.dumps(rows))[:5]}")
    assert not leaks, "\n".join(leaks)
