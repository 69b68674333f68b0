"""CDS Hooks patient-view latency for a patient with 30 days of home measurements.

Run: ``python -m bench.bench_cds`` (or ``make bench``). Starts the service (one worker, SQLite,
via bench/common.py) on 127.0.0.1, enrols one patient, sends 30 days of readings (SpO2, pulse,
respiratory rate and temperature twice a day, SpO2 falling over the last three days) through
FHIR, and loads ``POST /cds-services/home-followup-risk`` at concurrency 1 and 8 with the shared
generator (wrk, or the httpx fallback). Target (issue 6): p99 <= 50 ms at concurrency 8.
Synthetic patient; the figures are serving speed, not clinical performance.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.bench_v2 import measure
from bench.common import (
    SYNTHETIC_NOTE,
    LoadResult,
    dev_token,
    machine_note,
    markdown_table,
    service_settings,
    shipped_or_tiny_artifact,
    start_service,
)
from service.api.cds_hooks import SERVICE_ID

TIME_LIMIT_S = 600
DURATION_S = 8.0

FNR = "15076500565"  # synthetic, valid check digits
ORG = "983974899"  # the development organisation
CODES = {
    "spo2": ("2708-6", "%"),
    "heart_rate": ("8867-4", "/min"),
    "respiratory_rate": ("9279-1", "/min"),
    "temperature": ("8310-5", "Cel"),
}
NORMAL = {"spo2": 96.0, "heart_rate": 72.0, "respiratory_rate": 16.0, "temperature": 36.8}


def observation(pid: str, name: str, value: float, when: datetime, n: int) -> dict[str, Any]:
    loinc, unit = CODES[name]
    return {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.7.1", "value": f"bench-{n}"}],
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when.isoformat(),
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def thirty_days(pid: str, now: datetime) -> dict[str, Any]:
    """Twice-daily readings of four vital signs for 30 days; SpO2 falls over the last 3 days."""
    entries, n = [], 0
    for half_day in range(60, 0, -1):
        when = now - timedelta(hours=12 * half_day)
        for name, value in NORMAL.items():
            if name == "spo2" and half_day <= 6:
                value -= (7 - half_day) * 1.5
            n += 1
            entries.append({"resource": observation(pid, name, value, when, n)})
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


def seed_patient(base_url: str, clinician: str, integration: str) -> str:
    enrol = httpx.post(
        f"{base_url}/api/v1/patients",
        headers={"Authorization": f"Bearer {clinician}"},
        json={
            "identifier": FNR,
            "birth_date": "1965-07-15",
            "sex": "female",
            "pathway": "copd",
            "organisation": ORG,
            "unit": "lungs",
        },
        timeout=30,
    )
    enrol.raise_for_status()
    pid = str(enrol.json()["id"])
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    response = httpx.post(
        f"{base_url}/fhir",
        content=json.dumps(thirty_days(pid, now)),
        headers={"Authorization": f"Bearer {integration}", "Content-Type": "application/fhir+json"},
        timeout=120,
    )
    response.raise_for_status()
    return pid


def main() -> None:
    rows: list[tuple[str, LoadResult, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cds-") as tmp:
        work = Path(tmp)
        artifact, artifact_note = shipped_or_tiny_artifact(work)
        with start_service(work / "ours", artifact) as ours:
            settings = service_settings(work / "ours" / "var", artifact)
            pid = seed_patient(
                ours.base_url, dev_token(settings, "clinician"), dev_token(settings, "integration")
            )
            body = json.dumps(
                {
                    "hookInstance": str(uuid.uuid4()),
                    "hook": "patient-view",
                    "context": {"userId": "Practitioner/bench", "patientId": pid},
                }
            )
            headers = {
                "Authorization": f"Bearer {dev_token(settings, 'integration')}",
                "Content-Type": "application/json",
            }
            url = f"{ours.base_url}/cds-services/{SERVICE_ID}"
            cards = httpx.post(url, content=body, headers=headers, timeout=30).json()["cards"]
            for c in (1, 8):
                rows.append(
                    (
                        f"CDS patient-view, 30 days of data, c={c}",
                        *measure(ours, url, body, headers, c, DURATION_S),
                    )
                )

    print("## CDS Hooks patient-view\n")
    print(f"{machine_note()} Model: {artifact_note}. {SYNTHETIC_NOTE}\n")
    print(
        markdown_table(
            [
                "measurement",
                "tool",
                "req/s",
                "p50 ms",
                "p99 ms",
                "CPU ms/req",
                "requests",
                "errors",
            ],
            [
                (
                    name,
                    r.tool,
                    f"{r.rps:,.0f}",
                    f"{r.p50_ms:.2f}",
                    f"{r.p99_ms:.2f}",
                    f"{cpu:.2f}",
                    f"{r.requests:,}",
                    r.errors,
                )
                for name, r, cpu in rows
            ],
        )
    )
    at8 = rows[-1][1]
    print(f"\n- cards returned: {len(cards)} ({cards[0]['indicator'] if cards else 'none'})")
    print(f"- p99 at c=8: {at8.p99_ms:.1f} ms (target <= 50 ms)")


def smoke() -> None:
    """The seeded history is what the FHIR parser accepts (120 readings a vital sign)."""
    from service.fhir.parse import PARSERS

    bundle = thirty_days("p-1", datetime(2026, 3, 1, tzinfo=UTC))
    assert len(bundle["entry"]) == 240
    parsed = PARSERS["Observation"](bundle["entry"][-1]["resource"], 1_900_000_000.0)
    assert parsed.readings and parsed.subject.patient_id == "p-1"


if __name__ == "__main__":
    main()
