"""Rows and bytes per row on PostgreSQL, for the capacity model (docs/capacity.md).

A synthetic cohort goes through the real HTTP API of `triage serve` on PostgreSQL (enrolment, then
FHIR batch Bundles, one a patient-day, as `triage demo` feeds it). Then, per table: rows,
total bytes with indexes and TOAST (`pg_total_relation_size`), and bytes per row. Divided by the
cohort's patient-days, that is what a year of home follow-up costs in storage.

Needs PostgreSQL: TRIAGE_BENCH_DATABASE_URL, else TRIAGE_TEST_DATABASE_URL, else the local server.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import (
    machine_note,
    markdown_table,
    service_settings,
    shipped_or_tiny_artifact,
    start_service,
)

TIME_LIMIT_S = 900
PATIENTS = int(os.environ.get("BENCH_STORAGE_PATIENTS", "60"))
DAYS = int(os.environ.get("BENCH_STORAGE_DAYS", "30"))
TABLES = (
    "ingested_resources",
    "readings",
    "assessments",
    "worklist_items",
    "worklist_events",
    "outbox",
    "audit_log",
)


def _database_url() -> str:
    return os.environ.get("TRIAGE_BENCH_DATABASE_URL") or os.environ.get(
        "TRIAGE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )


def main() -> None:
    from sqlalchemy import create_engine, text

    from service.cli import load_demo_cohort

    base = _database_url()
    schema = f"bench_storage_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            model_dir, model_note = shipped_or_tiny_artifact(workdir)
            settings = service_settings(workdir / "var", model_dir)
            started = time.perf_counter()
            with start_service(workdir, model_dir, extra_env={"TRIAGE_DATABASE_URL": url}) as srv:
                counts = load_demo_cohort(
                    srv.base_url, settings, n_patients=PATIENTS, days=DAYS, seed=7
                )
            fed_s = time.perf_counter() - started
        engine = create_engine(url)
        rows = []
        total_bytes = 0
        with engine.connect() as conn:
            for table in TABLES:
                n = conn.execute(text(f'SELECT count(*) FROM "{schema}"."{table}"')).scalar_one()
                size = conn.execute(
                    text("SELECT pg_total_relation_size(:t)"), {"t": f'"{schema}"."{table}"'}
                ).scalar_one()
                total_bytes += size
                rows.append((table, n, f"{size / 1e6:.2f}", f"{size / max(n, 1):.0f}"))
        engine.dispose()
        patient_days = PATIENTS * DAYS
        print("## Storage on PostgreSQL, per table\n")
        print(
            f"{machine_note()}; {model_note}; {PATIENTS} synthetic patients × {DAYS} days "
            f"through the API ({counts['resources']} resources, {counts['refused']} refused) "
            f"in {fed_s:.0f} s.\n"
        )
        print(markdown_table(["table", "rows", "MB (with indexes)", "bytes per row"], rows))
        print(
            f"\nPer patient-day: {total_bytes / patient_days / 1e3:.1f} kB in all; "
            + ", ".join(f"{t} {int(n) / patient_days:.1f} rows" for t, n, _, _ in rows)
            + "."
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
