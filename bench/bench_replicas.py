"""Scale-out of the ingest path: 1, 2 and 4 replicas of `triage serve` on one PostgreSQL.

Each configuration gets the same load: single FHIR Observations (POST /fhir/Observation, a unique
identifier each, spread over PATIENTS patients), CONCURRENCY in flight, round-robin over the
replicas, for SECONDS. Every Observation is stored, scored (features, ONNX, rules), and updates
the worklist and the outbox in one transaction, under the patient's lock. Reported: throughput,
p50 and p99 latency, errors, and the ratio to one replica.

The load generator runs on the same machine, so on 2 cores it competes with the replicas and
PostgreSQL for CPU: read the ratios as what this machine allows, not as the service's limit.
Needs PostgreSQL: TRIAGE_BENCH_DATABASE_URL, else TRIAGE_TEST_DATABASE_URL, else the local server.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import machine_note, markdown_table, shipped_or_tiny_artifact

TIME_LIMIT_S = 900
REPLICA_COUNTS = tuple(int(n) for n in os.environ.get("BENCH_REPLICAS", "1,2,4").split(","))
SECONDS = float(os.environ.get("BENCH_REPLICAS_SECONDS", "20"))
CONCURRENCY = int(os.environ.get("BENCH_REPLICAS_CONCURRENCY", "16"))
PATIENTS = 40


def _database_url() -> str:
    return os.environ.get("TRIAGE_BENCH_DATABASE_URL") or os.environ.get(
        "TRIAGE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )


def _observation(pid: str, n: int, when: datetime) -> dict[str, Any]:
    from tests.helpers import observation

    return observation(pid, "spo2", 95 - (n % 4), when, f"bench-{n}")


async def _load(
    urls: list[str], headers: dict[str, str], patients: list[str], seconds: float, start_n: int
) -> tuple[list[float], int, int]:
    """(latencies of 2xx answers, non-2xx answers, requests sent)."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []  # the first failure, shown so a broken run says why
    failures = 0
    counter = start_n
    deadline = time.perf_counter() + seconds
    # Clinical times in the past day (never in the future, which would be refused).
    base_time = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal counter, failures
        while time.perf_counter() < deadline:
            counter += 1
            n = counter
            body = _observation(
                patients[n % len(patients)], n, base_time - timedelta(seconds=n % 80_000)
            )
            url = urls[n % len(urls)]
            started = time.perf_counter()
            try:
                response = await client.post(
                    f"{url}/fhir/Observation",
                    json=body,
                    headers={**headers, "Content-Type": "application/fhir+json"},
                )
                ok = response.status_code in (200, 201)
                if not ok and not errors:
                    errors.append(f"{response.status_code} {response.text[:300]}")
            except httpx.HTTPError as exc:
                ok = False
                if not errors:
                    errors.append(repr(exc))
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

    limits = httpx.Limits(max_connections=CONCURRENCY * 2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    if errors:
        print("first failure:", errors[0])
    return latencies, failures, counter - start_n


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(seconds: float = SECONDS, counts: tuple[int, ...] = REPLICA_COUNTS) -> list[dict[str, Any]]:
    import httpx

    from models.identifiers import person_number_for
    from service.security.principal import Role
    from service.security.tokens import issue_dev_token
    from tests.helpers import ORG, migrate_test_database
    from tests.replica_cluster import ReplicaSet, postgres_schema

    results = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        postgres_schema(_database_url(), "bench_replicas") as url,
    ):
        workdir = Path(tmp)
        model_dir, _ = shipped_or_tiny_artifact(workdir)
        migrate_test_database(url)
        with ReplicaSet(url, workdir, model_dir) as cluster:
            settings = cluster.settings()
            headers = {"Authorization": "Bearer " + issue_dev_token(settings, Role.INTEGRATION)}  # type: ignore[arg-type]
            first = cluster.add(1)[0]
            cluster.start(first)
            patients = []
            for i in range(PATIENTS):
                from datetime import date

                birth = date(1940 + i, 5, 12)
                fnr = next(f for k in range(100, 200) if (f := person_number_for(birth, k, False)))
                r = httpx.post(
                    f"{first.base_url}/api/v1/patients",
                    json={
                        "identifier": fnr,
                        "birth_date": birth.isoformat(),
                        "sex": "male",
                        "pathway": "copd",
                        "organisation": ORG,
                        "unit": "lungs",
                    },
                    headers=headers,
                    timeout=60,
                )
                r.raise_for_status()
                patients.append(r.json()["id"])
            sent_total = 0
            for n in counts:
                while len([r for r in cluster.replicas if r.alive()]) < n:
                    cluster.start(cluster.add(1)[0])
                urls = [r.base_url for r in cluster.replicas[:n]]
                asyncio.run(_load(urls, headers, patients, 3.0, sent_total))  # warm-up
                sent_total += 100_000
                latencies, failures, sent = asyncio.run(
                    _load(urls, headers, patients, seconds, sent_total)
                )
                sent_total += 100_000
                results.append(
                    {
                        "replicas": n,
                        "requests": sent,
                        "ok": len(latencies),
                        "failed": failures,
                        "throughput": len(latencies) / seconds,
                        "p50_ms": 1000 * _percentile(latencies, 0.50),
                        "p99_ms": 1000 * _percentile(latencies, 0.99),
                    }
                )
    return results


def report(results: list[dict[str, Any]], seconds: float) -> str:
    base = results[0]["throughput"] if results else float("nan")
    rows = [
        [
            r["replicas"],
            f"{r['throughput']:.1f}",
            f"{r['p50_ms']:.0f}",
            f"{r['p99_ms']:.0f}",
            r["failed"],
            f"{r['throughput'] / base:.2f}x",
        ]
        for r in results
    ]
    table = markdown_table(
        ["replicas", "Observations/s", "p50 ms", "p99 ms", "errors", "vs 1 replica"], rows
    )
    return (
        "## Ingest path scale-out on PostgreSQL (bench_replicas)\n\n"
        f"Single FHIR Observations, {CONCURRENCY} in flight, round-robin over the replicas, "
        f"{seconds:.0f} s per configuration after a 3 s warm-up; each one is stored, scored and "
        f"updates worklist and outbox in one transaction ({PATIENTS} patients).\n\n"
        f"{table}\n\n"
        "The load generator, PostgreSQL and every replica share this machine's CPUs, so the "
        "ratio shows what the machine allows, not the service's limit: with one replica the "
        "ingest path is CPU-bound in one Python process (JSON, FHIR parsing, features, ONNX, "
        "the ORM); a second replica adds a second process on the second core; beyond the core "
        "count, replicas only take turns.\n\n"
        f"{machine_note()}\n"
    )


def main() -> None:
    print(report(run(), SECONDS))


def smoke() -> None:
    print(report(run(seconds=2.0, counts=(1, 2)), 2.0))


if __name__ == "__main__":
    main()
