"""What the audit log costs the scoring path: POST /fhir/Observation (store, score, worklist),
and a worklist read that touches many patients (one audit row per patient shown).

Three ways to run the same app, each on a fresh SQLite database (WAL):
- ``audit off``: the writer detached (the "before" figure);
- ``audit inline``: every request writes its chained rows in its own transaction before it ends
  (the simple design we did not ship);
- ``audit queued``: the shipped design, an in-process queue drained by a background thread in
  batched inserts.

Requests go through the whole ASGI stack in-process (Starlette's TestClient), one at a time and
round-robin over the three apps (so a busy machine slows all three alike): per-request latency
without network noise. Data are synthetic.

Run: ``.venv/bin/python -m bench.bench_audit [--requests 300] [--patients 50]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import SYNTHETIC_NOTE, machine_note, markdown_table, shipped_or_tiny_artifact

MODES = ("audit off", "audit inline", "audit queued")
ORG = "983974899"


def _fnr(birth_ddmmyy: str, individual: int) -> str | None:
    k1w, k2w = (3, 7, 6, 1, 8, 9, 4, 5, 2), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    base = [int(c) for c in f"{birth_ddmmyy}{individual:03d}"]
    k1 = (11 - sum(d * w for d, w in zip(base, k1w, strict=True)) % 11) % 11
    if k1 == 10:
        return None
    k2 = (11 - sum(d * w for d, w in zip([*base, k1], k2w, strict=True)) % 11) % 11
    if k2 == 10:
        return None
    return "".join(map(str, [*base, k1, k2]))


def _synthetic_people(n: int) -> list[str]:
    out: list[str] = []
    individual = 100
    while len(out) < n:
        fnr = _fnr("150765", individual)
        individual += 1
        if fnr:
            out.append(fnr)
    return out


def _observation(patient_id: str, value: float, when: datetime, message_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "meta": {"profile": ["http://hl7.no/fhir/vkp/StructureDefinition/VkpObservation"]},
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.7.1", "value": message_id}],
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
        "code": {"coding": [{"system": "http://loinc.org", "code": "2708-6"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when.isoformat(),
        "valueQuantity": {
            "value": value,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Setup:
    """One app (own database) in one audit mode, started, with patients enrolled."""

    def __init__(self, mode: str, workdir: Path, artifact: Path, patients: int) -> None:
        import json

        from fastapi.testclient import TestClient

        from service.app import create_app
        from service.config import Settings
        from service.db.engine import migrate
        from service.security.audit import AuditWriter
        from service.security.principal import Role
        from service.security.tokens import issue_dev_token

        self.mode = mode
        var = workdir / mode.replace(" ", "-")
        var.mkdir(parents=True, exist_ok=True)
        settings = Settings(
            var_dir=var,
            model_dir=artifact,
            environment="test",
            log_json=True,
            drift_schedule_hours=0,
            database_url=f"sqlite:///{var / 'triage.db'}",
        )
        migrate(settings.resolved_database_url)
        self.app = create_app(settings)
        self.integration = {
            "Authorization": "Bearer " + issue_dev_token(settings, Role.INTEGRATION),
            "Content-Type": "application/fhir+json",
        }
        self.clinician = {"Authorization": "Bearer " + issue_dev_token(settings, Role.CLINICIAN)}
        self.client = TestClient(self.app)
        self.client.__enter__()
        queued = self.app.state.audit
        if mode == "audit off":
            queued.stop()
            self.app.state.audit = None
        elif mode == "audit inline":
            queued.stop()
            self.app.state.audit = AuditWriter(self.app.state.engine, synchronous=True)
        self.ids = []
        for fnr in _synthetic_people(patients):
            r = self.client.post(
                "/api/v1/patients",
                headers=self.integration,
                content=json.dumps(
                    {
                        "identifier": fnr,
                        "birth_date": "1965-07-15",
                        "sex": "female",
                        "pathway": "copd",
                        "organisation": ORG,
                        "unit": "lungs",
                    }
                ),
            )
            r.raise_for_status()
            self.ids.append(r.json()["id"])
        self.scoring: list[float] = []
        self.worklist: list[float] = []
        self.shown = 0
        self.drain_ms = 0.0

    def score_once(self, i: int, start: datetime, record: bool) -> None:
        import json

        body = json.dumps(
            _observation(
                self.ids[i % len(self.ids)],
                97 - (i % 9),
                start + timedelta(minutes=i),
                f"bench-{i}",
            )
        )
        t0 = time.perf_counter()
        r = self.client.post("/fhir/Observation", content=body, headers=self.integration)
        elapsed = (time.perf_counter() - t0) * 1000
        assert r.status_code == 201, r.text
        if record:
            self.scoring.append(elapsed)

    def worklist_once(self, record: bool) -> None:
        t0 = time.perf_counter()
        r = self.client.get("/api/v1/worklist", headers=self.clinician)
        elapsed = (time.perf_counter() - t0) * 1000
        assert r.status_code == 200
        self.shown = len(r.json())
        if record:
            self.worklist.append(elapsed)

    def close(self) -> None:
        t0 = time.perf_counter()
        if self.app.state.audit is not None:
            self.app.state.audit.flush(60)
        self.drain_ms = (time.perf_counter() - t0) * 1000
        self.client.__exit__(None, None, None)


def run(workdir: Path, artifact: Path, requests: int, patients: int) -> list[Setup]:
    """Round-robin over the modes, request by request, so machine load hits all alike."""
    setups = [Setup(m, workdir, artifact, patients) for m in MODES]
    start = datetime.now(UTC) - timedelta(days=10)
    warm = 20
    for i in range(requests + warm):
        for s in setups:
            s.score_once(i, start, record=i >= warm)
    for i in range(60):
        for s in setups:
            s.worklist_once(record=i >= 10)
    for s in setups:
        s.close()
    return setups


def _row(setup: Setup, key: str, baseline: float) -> list[object]:
    values = getattr(setup, key)
    median = statistics.median(values)
    return [
        setup.mode,
        f"{median:.2f}",
        f"{_percentile(values, 0.95):.2f}",
        f"{median / baseline:.2f}×",
    ]


def main(requests: int = 300, patients: int = 50) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        artifact, _source = shipped_or_tiny_artifact(workdir)
        results = run(workdir, artifact, requests, patients)
    base_scoring = statistics.median(results[0].scoring)
    base_worklist = statistics.median(results[0].worklist)
    print(
        f"## Audit log cost on the scoring path ({requests} POST /fhir/Observation, "
        f"{patients} patients, SQLite WAL, in-process)\n"
    )
    print(
        markdown_table(
            ["mode", "median ms", "p95 ms", "median vs off"],
            [_row(r, "scoring", base_scoring) for r in results],
        )
    )
    print(f"\n## Worklist read: {results[0].shown} patients shown, one audit row each\n")
    print(
        markdown_table(
            ["mode", "median ms", "p95 ms", "median vs off"],
            [_row(r, "worklist", base_worklist) for r in results],
        )
    )
    queued = results[2]
    print(
        f"\nQueued mode: the backlog left when the load stopped drained in "
        f"{queued.drain_ms:.0f} ms."
    )
    print(f"\n{SYNTHETIC_NOTE} {machine_note()}")


def smoke() -> None:
    main(requests=20, patients=5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--patients", type=int, default=50)
    args = parser.parse_args()
    main(args.requests, args.patients)
