"""CDS Hooks patient-view latency for a patient with 30 days of home measurements.

Run: ``python -m bench.bench_cds [--duration 5]``. Starts the service (uvicorn, one worker,
SQLite) on 127.0.0.1, enrols one patient, sends 30 days of readings (SpO2, pulse, respiratory
rate, temperature twice a day, then a deteriorating SpO2) through FHIR, and loads
``POST /cds-services/home-followup-risk`` at concurrency 1 and 8 with the generator of
bench_v2 (wrk, or the httpx fallback). Target (issue 6): p99 <= 50 ms at concurrency 8.
Synthetic patient; the numbers are serving speed, not clinical performance.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.bench_v2 import (
    Load,
    dev_token,
    free_port,
    load,
    prepare_service,
    serve,
    table,
    uvicorn_cmd,
)
from models.artifact import SHIPPED_ARTIFACT_DIR
from service.api.cds_hooks import SERVICE_ID

FNR = "15076500565"  # synthetic, valid check digits
ORG = "983974899"  # the development organisation
CODES = {"spo2": ("2708-6", "%"), "heart_rate": ("8867-4", "/min"),
         "respiratory_rate": ("9279-1", "/min"), "temperature": ("8310-5", "Cel")}
NORMAL = {"spo2": 96.0, "heart_rate": 72.0, "respiratory_rate": 16.0, "temperature": 36.8}


def observation(pid: str, name: str, value: float, when: datetime, n: int) -> dict[str, Any]:
    loinc, unit = CODES[name]
    return {
        "resourceType": "Observation", "status": "final",
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.7.1", "value": f"bench-{n}"}],
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                          "code": unit},
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
    enrol = httpx.post(f"{base_url}/api/v1/patients", headers={
        "Authorization": f"Bearer {clinician}"}, json={
        "identifier": FNR, "birth_date": "1965-07-15", "sex": "female", "pathway": "copd",
        "organisation": ORG, "unit": "lungs"}, timeout=30)
    enrol.raise_for_status()
    pid = str(enrol.json()["id"])
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    response = httpx.post(f"{base_url}/fhir", content=json.dumps(thirty_days(pid, now)),
                          headers={"Authorization": f"Bearer {integration}",
                                   "Content-Type": "application/fhir+json"}, timeout=120)
    response.raise_for_status()
    return pid


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--model-dir", type=Path, default=SHIPPED_ARTIFACT_DIR)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    results: dict[str, Load | str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cds-") as tmp:
        work = Path(tmp)
        env = prepare_service(work, args.model_dir)
        port = free_port()
        with serve("ours", uvicorn_cmd("service.app:create_app", port), "/healthz", port, env,
                   work) as ours:
            pid = seed_patient(ours.base_url, dev_token(env, "clinician"),
                               dev_token(env, "integration"))
            body = json.dumps({
                "hookInstance": str(uuid.uuid4()), "hook": "patient-view",
                "context": {"userId": "Practitioner/bench", "patientId": pid}}).encode()
            headers = {"Authorization": f"Bearer {dev_token(env, 'integration')}",
                       "Content-Type": "application/json"}
            url = f"{ours.base_url}/cds-services/{SERVICE_ID}"
            cards = httpx.post(url, content=body, headers=headers, timeout=30).json()["cards"]
            for c in (1, 8):
                results[f"CDS patient-view, 30 days of data, c={c}"] = load(
                    url, body, headers, c, args.duration, work)

    print("CDS Hooks patient-view (one uvicorn worker, SQLite; synthetic patient)\n")
    print(table(list(results.items())))
    at8 = results["CDS patient-view, 30 days of data, c=8"]
    print(f"\n- cards returned: {len(cards)} ({cards[0]['indicator'] if cards else 'none'})")
    if isinstance(at8, Load):
        print(f"- p99 at c=8 (target <= 50 ms): {at8.p99_ms:.1f} ms")
    report = {"results": {k: v.__dict__ if isinstance(v, Load) else v
                          for k, v in results.items()}, "cards": len(cards)}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
