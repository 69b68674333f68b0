"""Scoring path side by side: ours over HTTP vs `mlflow models serve` vs a hello-world floor.

Run: ``.venv/bin/python -m bench.bench_scoring [--patients 200] [--days 21] [--duration 10]``.
Everything runs on this machine in one go, one worker per server, the same load generator
(wrk, see bench/common.py) at concurrency 1 and 8. Targets are issue 2's:

- single-observation ingest+score p99 ≤ 20 ms at concurrency 8;
- throughput ≥ 1.5× `mlflow models serve` (which only predicts);
- a Bundle of 1,000 observations ingested and scored ≤ 1 s;
- re-scoring 10,000 patients with 30 days of history ≤ 10 s;
- worklist query for a unit with 5,000 open items p99 ≤ 50 ms;
- service resident memory ≤ 300 MB after the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    SEQ,
    SYNTHETIC_NOTE,
    LoadResult,
    Server,
    dev_token,
    log_onnx_to_mlflow,
    machine_note,
    markdown_table,
    run_load,
    service_settings,
    shipped_or_tiny_artifact,
    start_hello_world,
    start_mlflow_serve,
    start_service,
)

TIME_LIMIT_S = 3000  # about 10 min on a quiet machine; 30 min were seen on a shared one
CONCURRENCIES = (1, 8)
FHIR_JSON = "application/fhir+json"
SEED = 20261125
WORKLIST_UNIT = "bench-worklist"
WORKLIST_ITEMS = 5000
BUNDLE_SIZE = 1000
# Device readings a new Observation carries, round-robin, with plausible everyday values.
LOAD_CHANNELS = (
    ("spo2", 95.0, 1.5),
    ("heart_rate", 78.0, 8.0),
    ("respiratory_rate", 17.0, 2.0),
    ("temperature", 36.9, 0.3),
    ("weight", 78.0, 1.0),
)


@dataclass
class Cohort:
    """Patients enrolled in our service, with their simulated history and model inputs."""

    patient_ids: list[str]
    features: np.ndarray  # [n, F] as of the end of the history (the same inputs for mlflow)
    end_s: int
    resources: int
    load_s: float
    failed_posts: int  # upload Bundles answered 5xx (then retried)


# ---- our service: data ---------------------------------------------------------------------


def load_cohort(service: Server, token: str, n_patients: int, days: int) -> Cohort:
    """Enrol a simulated cohort over HTTP and upload its history, one batch Bundle per patient.

    One Bundle per patient means one scoring per patient during the upload (the cohort loads
    in a minute rather than re-scoring every patient for every time-ordered Bundle).
    """
    import httpx

    from models.features import compute_features
    from service.security.tokens import DEV_ORGANISATION
    from training.simulator import cohort_to_fhir, fhir_bundles, simulate_cohort

    started = time.perf_counter()
    # Ends a day before now, so no simulated reading lies in the future.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days + 1)
    cohort = simulate_cohort(n_patients, days, SEED, start=start)
    ids: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=service.base_url, headers=headers, timeout=300) as http:
        for p in cohort.patients:
            body = {
                "identifier": p.identifier,
                "birth_date": p.birth_date.isoformat(),
                "sex": p.sex,
                "pathway": p.pathway,
                "organisation": DEV_ORGANISATION,
                "unit": f"bench-{p.pathway}",
            }
            r = http.post("/api/v1/patients", json=body)
            if r.status_code != 201:
                raise RuntimeError(f"enrolment refused ({r.status_code}): {r.text[:200]}")
            ids.append(r.json()["id"])
        per_patient: dict[str, list[dict[str, Any]]] = {}
        for resource in cohort_to_fhir(cohort, lambda p: {"reference": f"Patient/{ids[p.key]}"}):
            per_patient.setdefault(resource["subject"]["reference"], []).append(resource)
    bundles = [b for resources in per_patient.values() for b in fhir_bundles(resources, 5000)]
    upload = timed_bundles(service, token, bundles, pause_s=0.0)
    count = sum(len(b["entry"]) for b in bundles)
    history = cohort.history()
    end_s = int(start.timestamp()) + days * 86_400
    ages = np.array([p.age_years for p in cohort.patients])
    X, _ = compute_features(history, np.arange(n_patients), np.full(n_patients, end_s), ages)
    return Cohort(ids, X, end_s, count, time.perf_counter() - started, upload.failed_posts)


def observation_templates(cohort: Cohort, at_s: int, seed: int = SEED) -> list[str]:
    """One new VKP Observation per patient (identifier = SEQ, filled in per request)."""
    from training.simulator import observation_resource

    rng = np.random.default_rng(seed)
    bodies = []
    for i, pid in enumerate(cohort.patient_ids):
        channel, centre, sd = LOAD_CHANNELS[i % len(LOAD_CHANNELS)]
        value = round(float(centre + sd * rng.standard_normal()), 1)
        if channel == "spo2":
            value = min(value, 100.0)
        resource = observation_resource(channel, value, at_s, SEQ, {"reference": f"Patient/{pid}"})
        bodies.append(json.dumps(resource))
    return bodies


def bundle_of(resources: list[dict[str, Any]]) -> dict[str, Any]:
    from training.simulator import fhir_bundles

    return next(fhir_bundles(resources, len(resources)))


async def _enrol_many(
    base_url: str, token: str, n: int, unit: str, concurrency: int = 8
) -> list[str]:
    import httpx

    from service.security.tokens import DEV_ORGANISATION
    from training.simulator import synthetic_fnr

    rng = np.random.default_rng(SEED + 1)
    tried: set[str] = set()
    ids: list[str] = []

    def fresh_identity() -> tuple[str, str]:
        while True:
            birth = (datetime(1930, 1, 1) + timedelta(days=int(rng.integers(0, 30_000)))).date()
            fnr = synthetic_fnr(birth, rng)
            if fnr not in tried:
                tried.add(fnr)
                return fnr, birth.isoformat()

    async def worker(client: httpx.AsyncClient) -> None:
        while len(ids) < n:
            fnr, birth = fresh_identity()
            body = {
                "identifier": fnr,
                "birth_date": birth,
                "sex": "female",
                "pathway": "copd",
                "organisation": DEV_ORGANISATION,
                "unit": unit,
            }
            r = await client.post("/api/v1/patients", json=body)
            if r.status_code in (200, 409):
                continue  # a synthetic number another bench patient already has
            if r.status_code != 201:
                raise RuntimeError(f"enrolment refused ({r.status_code}): {r.text[:200]}")
            ids.append(r.json()["id"])

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return ids


@dataclass
class BundleTimes:
    seconds: list[float]  # per accepted Bundle, client side, whole round trip
    refused_entries: int
    failed_posts: int  # 5xx answers (retried after a pause; the Bundle then counted once)
    entries: int = 0  # per Bundle (the largest)


def timed_bundles(
    service: Server, token: str, bundles: list[dict[str, Any]], pause_s: float = 1.0
) -> BundleTimes:
    """POST each Bundle after a pause (so earlier requests' audit rows are written first).

    A 5xx is retried up to twice and counted: on SQLite a batch Bundle's savepoints can meet
    another writer's commit (see the report), which is a finding, not a reason to stop.
    """
    import httpx

    times = BundleTimes([], 0, 0)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON}
    with httpx.Client(base_url=service.base_url, headers=headers, timeout=300) as http:
        for bundle in bundles:
            for attempt in range(3):
                time.sleep(pause_s if attempt == 0 else 1.0)
                started = time.perf_counter()
                r = http.post("/fhir", content=json.dumps(bundle))
                elapsed = time.perf_counter() - started
                if r.status_code < 500:
                    break
                times.failed_posts += 1
            if r.status_code != 200:
                raise RuntimeError(f"/fhir answered {r.status_code}: {r.text[:300]}")
            times.seconds.append(elapsed)
            times.entries = max(times.entries, len(bundle["entry"]))
            times.refused_entries += sum(
                not e["response"]["status"].startswith(("200", "201")) for e in r.json()["entry"]
            )
    return times


# ---- the vectorised re-scoring core --------------------------------------------------------


def rescore_core(
    model: Any, n_patients: int = 10_000, days: int = 30, simulated: int = 2000, seed: int = SEED
) -> dict[str, float]:
    """compute_features + one ONNX call + evaluate_batch per pathway, on an in-memory cohort.

    ``simulated`` patients come from training's simulator; copies (new patient indices, same
    readings) fill up to ``n_patients``. Returns seconds per stage and the sizes.
    """
    from models.features import History, compute_features
    from models.rules import ReadingsBatch, evaluate_batch, load_shipped_pathways
    from models.rules.catalogue import CATEGORY_SIGNALS, NUMERIC_SIGNALS
    from training.simulator import simulate_cohort

    simulated = min(simulated, n_patients)
    cohort = simulate_cohort(simulated, days, seed)
    copies = -(-n_patients // simulated)
    one = cohort.history()
    offsets = np.repeat(np.arange(copies) * simulated, len(one.patient))
    history = History(
        np.tile(one.patient, copies) + offsets,
        np.tile(one.channel, copies),
        np.tile(one.time_s, copies),
        np.tile(one.value, copies),
    )
    keep = history.patient < n_patients
    history = History(
        history.patient[keep], history.channel[keep], history.time_s[keep], history.value[keep]
    )
    patients = np.arange(n_patients)
    sim = patients % simulated
    ages = np.array([p.age_years for p in cohort.patients])[sim]
    pathways = np.array([p.pathway for p in cohort.patients])[sim]
    as_of = np.full(n_patients, cohort.start_s + days * 86_400)
    r = cohort.readings
    rule_rows: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name in np.unique(r.channel):
        if name in NUMERIC_SIGNALS or name in CATEGORY_SIGNALS:
            sel = r.channel == name
            p = np.concatenate([r.patient[sel] + k * simulated for k in range(copies)])
            keep = p < n_patients
            rule_rows[str(name)] = (
                p[keep],
                np.tile(r.time_s[sel], copies)[keep],
                np.tile(r.value[sel], copies)[keep],
            )

    timings: dict[str, float] = {"patients": n_patients, "readings": len(history.patient)}
    started = time.perf_counter()
    X, _ = compute_features(history, patients, as_of, ages)
    timings["features_s"] = time.perf_counter() - started
    started = time.perf_counter()
    prediction = model.predict(X)
    timings["onnx_s"] = time.perf_counter() - started
    started = time.perf_counter()
    shipped = load_shipped_pathways()
    for pathway in np.unique(pathways):
        members = np.flatnonzero(pathways == pathway)
        index = np.full(n_patients, -1)
        index[members] = np.arange(len(members))
        rows = {}
        for name, (p, t, v) in rule_rows.items():
            sel = index[p] >= 0
            rows[name] = (index[p[sel]], t[sel], v[sel])
        batch = ReadingsBatch.from_long(as_of[members], ages[members], rows)
        evaluate_batch(shipped[str(pathway)], batch, prediction.probability[members])
    timings["rules_s"] = time.perf_counter() - started
    timings["total_s"] = timings["features_s"] + timings["onnx_s"] + timings["rules_s"]
    return timings


def seed_cohort_store(
    sessions: Any, n_patients: int, days: int, simulated: int = 2000, seed: int = SEED
) -> tuple[int, int]:
    """Write a cohort straight into the store as ingestion would leave it; returns (end s, rows).

    ``simulated`` patients from training's simulator, copied under new patients up to
    ``n_patients``; one ingested resource per message, one reading per value (questionnaire
    item answers are left out: the simulator keeps them outside its readings table).
    """
    import uuid

    from sqlalchemy import insert

    from service.db.tables import Patient
    from service.security.tokens import DEV_ORGANISATION
    from training.simulator import simulate_cohort

    simulated = min(simulated, n_patients)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days + 1)
    cohort = simulate_cohort(simulated, days, seed, start=start)
    r = cohort.readings
    created = start.strftime("%Y-%m-%d %H:%M:%S.000000")
    patient_rows, resource_rows, reading_rows = [], [], []
    for i in range(n_patients):
        sim = cohort.patients[i % simulated]
        patient_rows.append(
            {
                "id": str(uuid.uuid4()),
                "identifier_system": "urn:oid:2.16.578.1.12.4.1.4.1",
                "identifier_value": f"9{i:010d}",
                "birth_date": sim.birth_date,
                "sex": sim.sex,
                "pathway_id": sim.pathway,
                "organisation": DEV_ORGANISATION,
                "unit": f"bench-{sim.pathway}",
                "confidential_to_guardians": False,
                "created_at": start,
                "created_by": "bench",
                "pathway_options": {},
            }
        )
    order = np.argsort(r.patient, kind="stable")
    bounds = np.searchsorted(r.patient[order], np.arange(simulated + 1))
    for i, patient in enumerate(patient_rows):
        k = i % simulated
        resource_of: dict[str, str] = {}
        channels_of: dict[str, set[str]] = {}
        for j in order[bounds[k] : bounds[k + 1]]:
            message = str(r.message_id[j])
            channel = str(r.channel[j])
            rid = resource_of.get(message)
            # The store holds one reading per resource component (a unique index since the
            # replicas migration): a message that repeats a channel becomes a second resource.
            if rid is None or channel in channels_of[rid]:
                key = message if rid is None else f"{message}|{j}"
                rid = resource_of[message] = str(uuid.uuid4())
                channels_of[rid] = set()
                resource_rows.append(
                    (
                        rid,
                        "Observation",
                        f"bench|{i}|{key}",
                        "",
                        patient["id"],
                        '{"resourceType": "Observation"}',
                        created,
                        "bench",
                    )
                )
            channels_of[rid].add(channel)
            reading_rows.append((patient["id"], rid, channel, float(r.value[j]), int(r.time_s[j])))
    with sessions() as session:
        session.execute(insert(Patient), patient_rows)
        session.commit()
        raw = session.connection().connection.dbapi_connection
        raw.executemany(
            "INSERT INTO ingested_resources (id, resource_type, idempotency_key, "
            "content_hash, patient_id, body, received_at, received_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            resource_rows,
        )
        raw.executemany(
            "INSERT INTO readings (patient_id, resource_id, name, value, effective_s) "
            "VALUES (?, ?, ?, ?, ?)",
            reading_rows,
        )
        raw.commit()
    return int(start.timestamp()) + days * 86_400, len(reading_rows)


def rescore_service(
    artifact: Path, workdir: Path, n_patients: int = 10_000, days: int = 30
) -> dict[str, float]:
    """ScoringService.rescore_cohort on a store holding ``n_patients`` × ``days`` of readings.

    The service is wired as the app wires it (build_services: pathways seeded, the DIPS outbox
    listening); the timing covers the whole unit of work, commit included.
    """
    from types import SimpleNamespace

    from service.db.engine import make_engine, make_session_factory, migrate, transaction
    from service.db.tables import Assessment
    from service.domain.container import build_services
    from service.model_registry import ModelRegistry
    from service.observability import Metrics

    var_dir = workdir / "var"
    var_dir.mkdir(parents=True, exist_ok=True)
    settings = service_settings(var_dir, artifact)
    url = settings.resolved_database_url
    migrate(url)
    engine = make_engine(url)
    try:
        sessions = make_session_factory(engine)
        models = ModelRegistry(settings)
        models.load()
        state = SimpleNamespace(
            settings=settings, sessions=sessions, models=models, metrics=Metrics()
        )
        services = build_services(SimpleNamespace(state=state))  # type: ignore[arg-type]
        started = time.perf_counter()
        end_s, readings = seed_cohort_store(sessions, n_patients, days)
        seed_s = time.perf_counter() - started
        started = time.perf_counter()
        with transaction(sessions) as session:
            scored = services.scoring.rescore_cohort(session, end_s)
        seconds = time.perf_counter() - started
        with sessions() as session:
            from sqlalchemy import func, select

            stored = session.scalar(select(func.count()).select_from(Assessment)) or 0
    finally:
        engine.dispose()
    return {
        "patients": n_patients,
        "readings": readings,
        "seed_s": seed_s,
        "scored": scored,
        "stored": stored,
        "seconds": seconds,
    }


# ---- the run ----------------------------------------------------------------------------


@dataclass
class OursResults:
    cohort: Cohort
    load: dict[int, LoadResult]
    with_history: BundleTimes
    first_data: BundleTimes
    open_items: int
    worklist: dict[int, LoadResult]
    full_list_ms: list[float]  # limit=5000, one request at a time, client side
    rss_mb: float
    rss_trace: list[tuple[str, float]]  # service RSS after each phase


def _measure(
    server: Server, path: str, concurrency: int, duration_s: float, prefix: str, **kw: Any
) -> LoadResult:
    """Warm up, then measure; ``extra["cpu_ms"]`` is the server's CPU time per request."""
    url = f"{server.base_url}{path}"
    # The first requests pay imports, caches and SQLite's page cache.
    run_load(
        url, concurrency=concurrency, duration_s=min(2.0, duration_s), prefix=f"w{prefix}", **kw
    )
    cpu_before = server.cpu_s()
    result = run_load(url, concurrency=concurrency, duration_s=duration_s, prefix=prefix, **kw)
    result.extra["cpu_ms"] = (server.cpu_s() - cpu_before) * 1000 / max(result.requests, 1)
    return result


def _bundles_with_history(cohort: Cohort, at_s: int, count: int = 3) -> list[dict[str, Any]]:
    """Bundles of 1,000 observations for 100 patients with history (10 readings each)."""
    from training.simulator import observation_resource

    patients = cohort.patient_ids[: min(100, len(cohort.patient_ids))]
    bundles = []
    for b in range(count):
        resources = []
        for k in range(BUNDLE_SIZE):
            channel, centre, _ = LOAD_CHANNELS[k % len(LOAD_CHANNELS)]
            subject = {"reference": f"Patient/{patients[k % len(patients)]}"}
            resources.append(
                observation_resource(
                    channel, round(centre, 1), at_s + 60 * b + k // 100, f"bundle-h{b}-{k}", subject
                )
            )
        bundles.append(bundle_of(resources))
    return bundles


def _first_data_bundles(patient_ids: list[str], at_s: int) -> list[dict[str, Any]]:
    """One SpO2 of 84 % per patient, 1,000 per Bundle: a single NEWS2 3-pointer, alerting."""
    from training.simulator import observation_resource

    return [
        bundle_of(
            [
                observation_resource("spo2", 84.0, at_s, f"wl-{i}", {"reference": f"Patient/{pid}"})
                for i, pid in enumerate(patient_ids[start : start + BUNDLE_SIZE], start)
            ]
        )
        for start in range(0, len(patient_ids), BUNDLE_SIZE)
    ]


def measure_ours(
    work: Path,
    artifact: Path,
    n_patients: int,
    days: int,
    duration_s: float,
    worklist_items: int,
    say: Callable[[str], None],
) -> OursResults:
    import httpx

    say("our service: start, enrol and upload the cohort's history")
    service = start_service(work / "service", artifact)
    rss_trace: list[tuple[str, float]] = [("started", service.rss_mb())]
    try:
        settings = service_settings(work / "service" / "var", artifact)
        integration = dev_token(settings, "integration")
        cohort = load_cohort(service, integration, n_patients, days)
        say(
            f"  {len(cohort.patient_ids)} patients, {cohort.resources} resources in "
            f"{cohort.load_s:.0f} s"
        )
        rss_trace.append(("history uploaded", service.rss_mb()))
        bodies = observation_templates(cohort, cohort.end_s + 3600)
        headers = {"Authorization": f"Bearer {integration}", "Content-Type": FHIR_JSON}
        load = {}
        for c in CONCURRENCIES:
            say(f"  POST /fhir/Observation at concurrency {c}")
            load[c] = _measure(
                service,
                "/fhir/Observation",
                c,
                duration_s,
                f"c{c}",
                headers=headers,
                bodies=bodies,
            )
        rss_trace.append(("single observations", service.rss_mb()))
        say("  Bundles of 1,000 observations for 100 patients with history")
        with_history = timed_bundles(
            service, integration, _bundles_with_history(cohort, cohort.end_s + 7200)
        )
        say(f"  worklist: enrol {worklist_items} patients in one unit, first data in Bundles")
        ids = asyncio.run(_enrol_many(service.base_url, integration, worklist_items, WORKLIST_UNIT))
        first_data = timed_bundles(
            service, integration, _first_data_bundles(ids, cohort.end_s + 3 * 3600)
        )
        rss_trace.append(("Bundles", service.rss_mb()))
        wl_headers = {"Authorization": f"Bearer {dev_token(settings, 'clinician')}"}
        probe = httpx.get(
            f"{service.base_url}/api/v1/worklist",
            headers=wl_headers,
            timeout=60,
            params={"unit": WORKLIST_UNIT, "limit": 5000},
        )
        open_items = len(probe.json()) if probe.status_code == 200 else -1
        worklist = {}
        for limit in (50, 500):
            say(f"  GET /api/v1/worklist limit={limit} at concurrency 8")
            worklist[limit] = _measure(
                service,
                f"/api/v1/worklist?unit={WORKLIST_UNIT}&limit={limit}",
                8,
                duration_s,
                f"wl{limit}",
                method="GET",
                headers=wl_headers,
            )
        rss_trace.append(("worklist pages at c=8", service.rss_mb()))
        say("  GET /api/v1/worklist limit=5000, one at a time")
        full_list_ms = []
        for _ in range(3):
            started = time.perf_counter()
            httpx.get(
                f"{service.base_url}/api/v1/worklist",
                headers=wl_headers,
                timeout=300,
                params={"unit": WORKLIST_UNIT, "limit": 5000},
            ).raise_for_status()
            full_list_ms.append((time.perf_counter() - started) * 1000)
        return OursResults(
            cohort,
            load,
            with_history,
            first_data,
            open_items,
            worklist,
            full_list_ms,
            service.rss_mb(),
            rss_trace,
        )
    except Exception:
        say(f"our service's log ends:\n{service.log_tail(6000)}")
        raise
    finally:
        service.stop()


def measure_mlflow(
    work: Path, artifact: Path, features: np.ndarray, duration_s: float, say: Callable[[str], None]
) -> tuple[dict[int, LoadResult], float]:
    say("mlflow models serve: log the same ONNX file, serve it with one worker")
    uri = log_onnx_to_mlflow(artifact, work / "mlflow")
    bodies = [
        json.dumps({"inputs": {"features": [row.tolist()]}}) for row in features.astype(np.float32)
    ]
    results = {}
    with start_mlflow_serve(uri, work / "mlflow") as server:
        for c in CONCURRENCIES:
            say(f"  POST /invocations at concurrency {c}")
            results[c] = _measure(
                server,
                "/invocations",
                c,
                duration_s,
                f"m{c}",
                headers={"Content-Type": "application/json"},
                bodies=bodies,
            )
        return results, server.rss_mb()


def measure_hello(
    work: Path, duration_s: float, say: Callable[[str], None]
) -> tuple[dict[int, LoadResult], float]:
    say("hello-world FastAPI")
    with start_hello_world(work / "hello") as server:
        results = {
            c: _measure(server, "/", c, duration_s, f"h{c}", method="GET") for c in CONCURRENCIES
        }
        return results, server.rss_mb()


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _bundle_cell(times: BundleTimes) -> str:
    return f"{float(np.median(times.seconds)):.2f} s (median of {len(times.seconds)})"


def _bundle_how(times: BundleTimes, scorings: str) -> str:
    return (
        f"{scorings} scorings per Bundle; {times.refused_entries} entries refused; "
        f"{times.failed_posts} POSTs answered 5xx and were retried"
    )


def report(
    ours: OursResults,
    mlflow: dict[int, LoadResult],
    hello: dict[int, LoadResult],
    rss: dict[str, float],
    rescore: dict[str, float],
    core: dict[str, float],
    header: str,
) -> str:
    """The Markdown tables: load side by side, ratios, targets, worklist detail."""
    loads = {"ours": ours.load, "mlflow": mlflow, "hello": hello}
    labels = {
        "ours": "ours: POST /fhir/Observation (validate, store, features, ONNX, rules, "
        "explain, assessment, worklist)",
        "mlflow": "`mlflow models serve` /invocations, same model, same feature rows "
        "(predict only)",
        "hello": "hello-world FastAPI GET / (floor)",
    }
    load_table = markdown_table(
        [
            "target (1 worker each)",
            "concurrency",
            "req/s",
            "p50 ms",
            "p99 ms",
            "server CPU ms/req",
            "requests",
            "errors",
        ],
        [
            [
                labels[t],
                c,
                f"{r.rps:,.0f}",
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                f"{r.extra['cpu_ms']:.2f}",
                r.requests,
                r.errors,
            ]
            for t in loads
            for c, r in loads[t].items()
        ],
    )

    def ratio(a: str, b: str, c: int) -> float:
        return loads[a][c].rps / loads[b][c].rps if loads[b][c].rps else float("nan")

    ratio_table = markdown_table(
        ["throughput ratio", *(f"c={c}" for c in CONCURRENCIES)],
        [
            [f"{a} / {b}", *(f"{ratio(a, b, c):.2f}" for c in CONCURRENCIES)]
            for a, b in (("ours", "mlflow"), ("ours", "hello"), ("mlflow", "hello"))
        ],
    )
    ours8, wl500 = ours.load[8], ours.worklist[500]
    median_first = float(np.median(ours.first_data.seconds))
    median_history = float(np.median(ours.with_history.seconds))
    targets = [
        [
            "single-observation ingest+score p99 at c=8",
            "≤ 20 ms",
            f"{ours8.p99_ms:.1f} ms",
            _verdict(ours8.p99_ms <= 20),
            f"{ours8.tool}, POST /fhir/Observation, {ours8.errors} errors",
        ],
        [
            "throughput vs `mlflow models serve` at c=8",
            "≥ 1.5×",
            f"{ratio('ours', 'mlflow', 8):.2f}×",
            _verdict(ratio("ours", "mlflow", 8) >= 1.5),
            f"{ours8.rps:,.0f} vs {mlflow[8].rps:,.0f} req/s",
        ],
        [
            f"Bundle of {ours.first_data.entries:,} observations for as many patients (first "
            "data each)",
            "≤ 1 s",
            _bundle_cell(ours.first_data),
            _verdict(median_first <= 1),
            _bundle_how(ours.first_data, f"{ours.first_data.entries:,}"),
        ],
        [
            "Bundle of 1,000 observations for 100 patients with history (10 each)",
            "≤ 1 s",
            _bundle_cell(ours.with_history),
            _verdict(median_history <= 1),
            _bundle_how(ours.with_history, "100"),
        ],
        [
            f"re-scoring {int(rescore['patients']):,} patients with {rescore['days']:.0f} days of "
            "history",
            "≤ 10 s",
            f"{rescore['seconds']:.1f} s",
            _verdict(rescore["seconds"] <= 10),
            f"ScoringService.rescore_cohort in one transaction (query, features, ONNX, rules, "
            f"{int(rescore['stored']):,} assessments and worklist updates, commit) over "
            f"{int(rescore['readings']):,} stored readings; SQLite",
        ],
        [
            f"  of which the vectorised core ({int(core['patients']):,} patients, in memory)",
            "",
            f"{core['total_s']:.2f} s",
            "",
            f"compute_features {core['features_s']:.2f} s + "
            f"one ONNX call {core['onnx_s']:.2f} s + evaluate_batch per pathway "
            f"{core['rules_s']:.2f} s; no query, no insert",
        ],
        [
            f"worklist query, unit with {ours.open_items:,} open items, p99 at c=8 (limit 500, "
            "the default page)",
            "≤ 50 ms",
            f"{wl500.p99_ms:.1f} ms",
            _verdict(wl500.p99_ms <= 50),
            f"{wl500.rps:,.0f} req/s",
        ],
        [
            "service resident memory after the benchmark",
            "≤ 300 MB",
            f"{ours.rss_mb:.0f} MB",
            _verdict(ours.rss_mb <= 300),
            "after each phase: "
            + ", ".join(f"{label} {mb:.0f} MB" for label, mb in ours.rss_trace)
            + f"; mlflow serve {rss['mlflow']:.0f} MB, hello-world {rss['hello']:.0f} MB",
        ],
    ]
    target_table = markdown_table(
        ["target (issue 2)", "goal", "measured", "verdict", "how"], targets
    )
    worklist_table = markdown_table(
        [
            "GET /api/v1/worklist?unit=…, c=8",
            "req/s",
            "p50 ms",
            "p99 ms",
            "server CPU ms/req",
            "errors",
        ],
        [
            [
                f"limit={k}",
                f"{v.rps:,.0f}",
                f"{v.p50_ms:.1f}",
                f"{v.p99_ms:.1f}",
                f"{v.extra['cpu_ms']:.1f}",
                v.errors,
            ]
            for k, v in ours.worklist.items()
        ]
        + [
            [
                "limit=5000 (every open item), one request at a time",
                "",
                f"{float(np.median(ours.full_list_ms)):.0f}",
                f"{max(ours.full_list_ms):.0f} (max of {len(ours.full_list_ms)})",
                "",
                0,
            ]
        ],
    )
    return "\n\n".join(
        [
            "### Scoring path: ours vs `mlflow models serve` vs hello-world",
            header,
            load_table,
            ratio_table,
            target_table,
            worklist_table,
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200, help="patients with history")
    parser.add_argument("--days", type=int, default=21, help="days of history per patient")
    parser.add_argument("--duration", type=float, default=10, help="seconds per load run")
    parser.add_argument("--worklist-items", type=int, default=WORKLIST_ITEMS)
    parser.add_argument("--rescore-patients", type=int, default=10_000)
    parser.add_argument("--rescore-days", type=int, default=30)
    args = parser.parse_args(argv)
    print(
        run(
            args.patients,
            args.days,
            args.duration,
            args.worklist_items,
            args.rescore_patients,
            args.rescore_days,
        )
    )


def run(
    n_patients: int,
    days: int,
    duration_s: float,
    worklist_items: int,
    rescore_patients: int,
    rescore_days: int,
) -> str:
    """Every measurement, servers one at a time; returns the Markdown report."""
    from models.runtime import OnnxRiskModel

    def say(msg: str) -> None:
        print(f"[bench_scoring] {msg}", file=sys.stderr, flush=True)

    note = machine_note()
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        work = Path(tmp)
        artifact, artifact_label = shipped_or_tiny_artifact(work)
        ours = measure_ours(work, artifact, n_patients, days, duration_s, worklist_items, say)
        mlflow, mlflow_rss = measure_mlflow(work, artifact, ours.cohort.features, duration_s, say)
        hello, hello_rss = measure_hello(work, duration_s, say)
        say(f"re-scoring: {rescore_patients} patients × {rescore_days} days in the store")
        rescore = rescore_service(artifact, work / "rescore", rescore_patients, rescore_days)
        rescore["days"] = rescore_days
        say("re-scoring: the vectorised core in memory")
        core = rescore_core(OnnxRiskModel(artifact).load(), rescore_patients, rescore_days)
    header = (
        f"{note} Model: {artifact_label}. Load generator: {ours.load[8].tool}, "
        f"{duration_s:.0f} s per run after a 2 s warm-up, one server at a time. Our service: "
        f"`triage serve` (1 worker, SQLite WAL, audit trail and DIPS outbox on), "
        f"{len(ours.cohort.patient_ids)} patients with {days} days of history "
        f"({ours.cohort.resources:,} resources uploaded first); each request a new Observation "
        f"identifier. {SYNTHETIC_NOTE}"
    )
    return report(
        ours, mlflow, hello, {"mlflow": mlflow_rss, "hello": hello_rss}, rescore, core, header
    )


def smoke() -> None:
    """Seconds: our service with 3 patients, 1 s of load at c=2, and small re-scorings."""
    from models.runtime import OnnxRiskModel

    with tempfile.TemporaryDirectory(prefix="bench-scoring-smoke-") as tmp:
        work = Path(tmp)
        from training.fixtures import build_tiny_artifact

        artifact = build_tiny_artifact(work / "artifact", n_patients=20, days=14)
        with start_service(work / "service", artifact) as service:
            settings = service_settings(work / "service" / "var", artifact)
            token = dev_token(settings, "integration")
            cohort = load_cohort(service, token, 3, 3)
            bodies = observation_templates(cohort, cohort.end_s + 60)
            result = run_load(
                f"{service.base_url}/fhir/Observation",
                concurrency=2,
                duration_s=1,
                prefix="smoke",
                bodies=bodies,
                headers={"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON},
            )
            if result.requests == 0 or result.errors:
                raise AssertionError(f"smoke load failed: {result}\n{service.log_tail()}")
        timings = rescore_core(OnnxRiskModel(artifact).load(), 40, 5, simulated=10)
        if timings["patients"] != 40 or not timings["total_s"] > 0:
            raise AssertionError(f"re-scoring core did not run: {timings}")
        stored = rescore_service(artifact, work / "rescore", 12, 5)
        if stored["scored"] != 12 or stored["stored"] != 12:
            raise AssertionError(f"rescore_cohort did not score every patient: {stored}")


if __name__ == "__main__":
    main()
