"""`make bench`: run every bench module in its own subprocess, print each result, write a report.

Run: ``.venv/bin/python -m bench.run [--only scoring,rules] [--time-limit 900]``.
Discovers ``bench/bench_*.py`` (the convention is in bench/common.py: ``main()`` prints the
result, Markdown preferred) and runs each as ``python -m bench.<name>`` with a time limit, one
after another so they never compete for the two cores. The combined Markdown report goes to
bench/results/latest.md (git-ignored). A module that fails or times out is reported as such and
the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import ast
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from bench.common import REPO_ROOT, RESULTS_DIR, ensure_wrk, machine_note

BENCH_DIR = REPO_ROOT / "bench"
DEFAULT_TIME_LIMIT_S = 900.0


@dataclass
class ModuleRun:
    name: str
    status: str  # ok | failed (exit n) | timed out after n s
    seconds: float
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def discover(bench_dir: Path = BENCH_DIR) -> list[str]:
    """Module names of bench/bench_*.py, sorted."""
    return sorted(p.stem for p in bench_dir.glob("bench_*.py"))


def declared_time_limit(path: Path) -> float | None:
    """A module's ``TIME_LIMIT_S = <number>``, read without importing it (imports cost)."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        for target in targets:
            if isinstance(target, ast.Name) and target.id == "TIME_LIMIT_S":
                value = getattr(node, "value", None)
                if isinstance(value, ast.Constant) and isinstance(value.value, int | float):
                    return float(value.value)
    return None


def run_module(name: str, time_limit_s: float, echo: bool = True) -> ModuleRun:
    """``python -m bench.<name>`` with a time limit; its process group is ended on timeout.

    Progress on the module's stderr is passed through as it comes; stdout is the result.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", f"bench.{name}"],
        cwd=str(REPO_ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out: list[str] = []
    err: list[str] = []

    def pump(stream: IO[str], into: list[str], echo_to: IO[str] | None) -> None:
        for line in stream:
            into.append(line)
            if echo_to is not None:
                echo_to.write(line)
                echo_to.flush()

    readers = [
        threading.Thread(target=pump, args=(process.stdout, out, None), daemon=True),
        threading.Thread(
            target=pump, args=(process.stderr, err, sys.stderr if echo else None), daemon=True
        ),
    ]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout=time_limit_s)
        status = "ok" if process.returncode == 0 else f"failed (exit {process.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the module's own servers are in its group
        process.wait()
        status = f"timed out after {time_limit_s:.0f} s"
    for reader in readers:
        reader.join(timeout=10)
    seconds = time.perf_counter() - started
    stdout, stderr = "".join(out), "".join(err)
    if echo:
        print(stdout, end="" if stdout.endswith("\n") else "\n", flush=True)
        if status != "ok":
            print(f"[{name}] {status}", file=sys.stderr, flush=True)
    return ModuleRun(name, status, seconds, stdout, stderr)


def _is_markdown(text: str) -> bool:
    return any(
        line.lstrip().startswith("|") and line.rstrip().endswith("|") for line in text.splitlines()
    )


def render(runs: list[ModuleRun], started_at: datetime, note: str) -> str:
    """The combined report: an index, then each module's output (plain text in a code block)."""
    parts = [
        "# Benchmark results",
        "",
        f"Run {started_at.strftime('%Y-%m-%d %H:%M UTC')} with "
        f"`.venv/bin/python -m bench.run` (`make bench`). {note}",
        "Figures come from one run on a shared machine; the model is trained on synthetic "
        "data and all patients are synthetic.",
        "",
        "| module | status | seconds |",
        "|---|---|---|",
    ]
    parts += [f"| {r.name} | {r.status} | {r.seconds:.0f} |" for r in runs]
    for r in runs:
        parts += ["", f"## {r.name}", ""]
        body = r.stdout.strip()
        if body:
            parts.append(body if _is_markdown(body) else f"```\n{body}\n```")
        if not r.ok:
            parts += [
                "",
                f"**{r.status}**; last lines of stderr:",
                "",
                "```",
                r.stderr.strip()[-3000:],
                "```",
            ]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated module names (with or without bench_)")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help=f"seconds per module (default: the module's TIME_LIMIT_S, else "
        f"{DEFAULT_TIME_LIMIT_S:.0f})",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.md")
    args = parser.parse_args(argv)

    names = discover()
    if args.only:
        wanted = {w if w.startswith("bench_") else f"bench_{w}" for w in args.only.split(",")}
        names = [n for n in names if n in wanted]
    started_at = datetime.now(UTC)
    wrk = ensure_wrk()  # the load generator, installed once before any module needs it
    note = machine_note() + (
        " Load generator: wrk." if wrk else " Load generator: httpx (wrk unavailable)."
    )
    runs = []
    for name in names:
        limit = (
            args.time_limit
            or declared_time_limit(BENCH_DIR / f"{name}.py")
            or (DEFAULT_TIME_LIMIT_S)
        )
        print(f"\n== {name} (time limit {limit:.0f} s) ==", flush=True)
        runs.append(run_module(name, limit))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(runs, started_at, note))
    print(f"\nreport: {args.output}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
