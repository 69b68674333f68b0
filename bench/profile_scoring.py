"""Where the scoring path spends its time: py-spy on the real server under the bench's load.

Run: ``.venv/bin/python -m bench.profile_scoring [--target observation|worklist|bundle]``.
Needs py-spy (``.venv/bin/pip install py-spy``; not a project dependency) and root or ptrace
rights. Starts `triage serve` with a synthetic cohort as bench_scoring does, samples the server
process (all threads, idle excluded) while wrk drives one path, and prints the functions with
the most samples: inclusive (the function and what it calls) and self (the function itself).
Not part of `make bench` (bench/run.py runs bench_*.py only).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.bench_scoring import (
    FHIR_JSON,
    WORKLIST_UNIT,
    _bundles_with_history,
    _enrol_many,
    _first_data_bundles,
    load_cohort,
    observation_templates,
    timed_bundles,
)
from bench.common import (
    dev_token,
    markdown_table,
    run_load,
    service_settings,
    shipped_or_tiny_artifact,
    start_service,
)

# Leaf frames of threads that wait (thread pool, audit queue, event loop in epoll): not work.
IDLE_LEAVES = frozenset(
    {
        "threading.py:Condition.wait",
        "concurrent/futures/thread.py:_worker",
        "asyncio/runners.py:Runner.run",
        "queue.py:Queue.get",
        "selectors.py:EpollSelector.select",
        "service/security/audit.py:AuditWriter._take_batch",
        "threading.py:Event.wait",
        "asyncio/base_events.py:BaseEventLoop._run_once",
    }
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    """``function (path/to/file.py:12)`` -> ``file.py:function`` relative to the repo or venv."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{m['func']}"


def summarise(
    raw: str, top: int = 25
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    """Active samples; top functions by inclusive samples, by self samples, and ours (py-spy raw).

    "Ours" are the functions in service/ and models/, inclusive: where our code's time goes.
    """
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames or frames[-1] in IDLE_LEAVES:
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    ours = Counter({k: v for k, v in inclusive.items() if k.startswith(("service/", "models/"))})
    return total, inclusive.most_common(top), own.most_common(top), ours.most_common(top)


def profile(target: str, seconds: float, n_patients: int, days: int, concurrency: int = 8) -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    with tempfile.TemporaryDirectory(prefix="profile-scoring-") as tmp:
        work = Path(tmp)
        artifact, _ = shipped_or_tiny_artifact(work)
        with start_service(work / "service", artifact) as service:
            settings = service_settings(work / "service" / "var", artifact)
            token = dev_token(settings, "integration")
            cohort = load_cohort(service, token, n_patients, days)
            out = work / "profile.txt"
            if target == "worklist":
                ids = asyncio.run(_enrol_many(service.base_url, token, 1000, WORKLIST_UNIT))
                timed_bundles(service, token, _first_data_bundles(ids, cohort.end_s + 3600))
            recorder = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(service.serving_pid()),
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    "--duration",
                    str(int(seconds)),
                    "--rate",
                    "250",
                    "--threads",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if target == "observation":
                run_load(
                    f"{service.base_url}/fhir/Observation",
                    concurrency=concurrency,
                    duration_s=seconds,
                    prefix="p",
                    bodies=observation_templates(cohort, cohort.end_s + 3600),
                    headers={"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON},
                )
            elif target == "worklist":
                clinician = dev_token(settings, "clinician")
                run_load(
                    f"{service.base_url}/api/v1/worklist?unit={WORKLIST_UNIT}",
                    method="GET",
                    concurrency=concurrency,
                    duration_s=seconds,
                    headers={"Authorization": f"Bearer {clinician}"},
                )
            else:
                timed_bundles(service, token, _bundles_with_history(cohort, cohort.end_s + 7200))
            recorder.wait(seconds + 60)
            raw = out.read_text() if out.exists() else ""
    total, inclusive, own, ours = summarise(raw)
    return "\n\n".join(
        [
            f"### Profile: {target}, concurrency {concurrency} ({total} active samples at 250 Hz over {seconds:.0f} s, all "
            "threads; waiting threads left out)",
            markdown_table(
                ["function (inclusive)", "samples", "share"],
                [[n, c, f"{c / max(total, 1):.0%}"] for n, c in inclusive],
            ),
            markdown_table(
                ["function (self)", "samples", "share"],
                [[n, c, f"{c / max(total, 1):.0%}"] for n, c in own],
            ),
            markdown_table(
                ["our function (inclusive)", "samples", "share"],
                [[n, c, f"{c / max(total, 1):.0%}"] for n, c in ours],
            ),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target", choices=("observation", "worklist", "bundle"), default="observation"
    )
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args(argv)
    print(profile(args.target, args.seconds, args.patients, args.days, args.concurrency))


if __name__ == "__main__":
    main()
