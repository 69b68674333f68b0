"""Drift-report benchmark: 50 000 current rows against a 20 000-row reference (target ≤ 60 s).

Also measures what a report does to scoring latency when it runs beside the scorer: single-row
ONNX predictions are timed alone, then while a report runs in a thread of the same process, then
while the service's ReportRunner runs it in its worker process (how the service runs it).

Run: ``.venv/bin/python -m bench.bench_drift [--current-rows 50000] [--reference-rows 20000]``.
Data: training's cohort simulator (synthetic), scored by a tiny model trained on it.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from models.features import CHANNEL_INDEX, HISTORY_CHANNELS, compute_features
from models.runtime import OnnxRiskModel
from monitoring.data import MonitoringFrame

DAYS = 21
ORGANISATIONS = ("974557746", "983974899", "987654321")


def simulated_frame(model: OnnxRiskModel, rows: int, seed: int) -> MonitoringFrame:
    """About ``rows`` scored patient-days from the simulator (≈ 19.5 rows per patient)."""
    from training.simulator import simulate_cohort, snapshot_dataset

    cohort = simulate_cohort(max(5, int(rows / 19.5) + 1), DAYS, seed)
    history = cohort.history()
    X, y, meta = snapshot_dataset(cohort, history)
    X, y, meta = X[:rows], y[:rows], meta.iloc[:rows]
    patient, time_s = meta["patient"].to_numpy(), meta["time_s"].to_numpy()
    _, context = compute_features(
        history,
        patient,
        time_s,
        meta["age_years"].to_numpy(),
        first_reading_s=np.full(len(patient), cohort.start_s),
    )
    return MonitoringFrame(
        X=X,
        probability=model.predict(X).probability,
        pathway=meta["pathway"].to_numpy(dtype=str),
        organisation=np.asarray(ORGANISATIONS)[patient % len(ORGANISATIONS)],
        scored_at=time_s,
        outcome=y.astype(np.float64),
        raw={ch: context.latest[:, CHANNEL_INDEX[ch]] for ch in HISTORY_CHANNELS},
        patient=np.char.add(f"s{seed}-", patient.astype(str)),
    )


def _run_report(reference: MonitoringFrame, current: MonitoringFrame) -> dict[str, object]:
    from monitoring.config import DriftConfig
    from monitoring.drift import run_drift_report

    started = time.perf_counter()
    result = run_drift_report(
        reference,
        current,
        DriftConfig(),
        window_start=0,
        window_end=2_000_000_000,
        model_version="bench",
        pathway=None,
        organisation=None,
    )
    return {
        "seconds": time.perf_counter() - started,
        "verdict": result.verdict,
        "html_bytes": len(result.html.encode()),
        "slices": len(result.slices),
        "drifted": result.drifted_features,
    }


def _latencies_ms(
    model: OnnxRiskModel, X: np.ndarray, stop: threading.Event | None, count: int = 400
) -> np.ndarray:
    """Single-row predictions, as the ingestion path scores, until ``stop`` (or ``count``)."""
    times = []
    i = 0
    while (stop is None and i < count) or (stop is not None and not stop.is_set()):
        row = X[i % len(X)][None, :]
        started = time.perf_counter()
        model.predict(row)
        times.append((time.perf_counter() - started) * 1000)
        i += 1
        time.sleep(0.002)  # ~ a few hundred requests per second, not a busy loop
    return np.asarray(times)


def _describe(name: str, ms: np.ndarray) -> str:
    return (
        f"{name:<56} n={len(ms):>5}  p50={np.percentile(ms, 50):6.2f} ms  "
        f"p99={np.percentile(ms, 99):6.2f} ms  max={ms.max():7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--current-rows", type=int, default=50_000)
    parser.add_argument("--reference-rows", type=int, default=20_000)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()

    from training.fixtures import build_tiny_artifact

    with tempfile.TemporaryDirectory() as folder:
        model = OnnxRiskModel(build_tiny_artifact(Path(folder))).load()
        started = time.perf_counter()
        reference = simulated_frame(model, args.reference_rows, seed=1000)
        current = simulated_frame(model, args.current_rows, seed=2000)
        print(
            f"data: {len(current)} current rows, {len(reference)} reference rows "
            f"(simulated and scored in {time.perf_counter() - started:.1f} s; synthetic)"
        )

        _run_report(reference.take(np.arange(2000)), current.take(np.arange(2000)))  # warm-up
        result = _run_report(reference, current)
        print(
            f"report: {result['seconds']:.1f} s (target ≤ 60 s), verdict {result['verdict']}, "
            f"HTML {int(result['html_bytes']) / 1e6:.2f} MB, {result['slices']} slices"
        )
        if args.skip_latency:
            return

        X = current.X.astype(np.float64)
        print(_describe("scoring alone", _latencies_ms(model, X, None)))
        stop = threading.Event()
        samples: list[np.ndarray] = []
        scorer = threading.Thread(target=lambda: samples.append(_latencies_ms(model, X, stop)))
        scorer.start()
        in_thread = _run_report(reference, current)
        stop.set()
        scorer.join()
        print(
            _describe("report in a thread (same process)", samples[0])
            + f"  [report {in_thread['seconds']:.1f} s]"
        )

        # The service's own way: MonitoringService hands the job to its ReportRunner, one
        # spawned worker process (service/domain/monitoring.py).
        from monitoring.config import DriftConfig
        from service.domain.monitoring import ReportRunner

        runner = ReportRunner()
        job = {
            "reference": reference,
            "current": current,
            "config": DriftConfig(),
            "window_start": 0,
            "window_end": 2_000_000_000,
            "model_version": "bench",
            "pathway": None,
            "organisation": None,
        }
        stop = threading.Event()
        samples = []
        scorer = threading.Thread(target=lambda: samples.append(_latencies_ms(model, X, stop)))
        scorer.start()
        started = time.perf_counter()
        runner.run(job)
        seconds = time.perf_counter() - started
        stop.set()
        scorer.join()
        runner.close()
        print(
            _describe("scoring p99 during a report (service's worker process)", samples[0])
            + f"  [report {seconds:.1f} s incl. starting the worker]"
        )


if __name__ == "__main__":
    main()
