"""Shared benchmark helpers: servers in subprocesses, one load generator, Markdown tables.

Every bench module (``bench/bench_*.py``) follows one small convention so ``python -m bench.run``
can run them all:

- ``main() -> None`` runs the full benchmark and prints its result, preferably as Markdown
  (tables made with :func:`markdown_table`); plain text is shown in a code block;
- ``smoke() -> None`` (optional) runs a small-scale self-check in seconds, for
  ``tests/bench/test_bench_smoke.py`` (no timing asserts);
- ``TIME_LIMIT_S`` (optional, module level) overrides run.py's default time limit.

Servers under test run with one worker each and are measured with the same load generator:
``wrk`` (Debian package; a Lua script sends POST bodies with a unique id per request and reports
latency percentiles), or an asyncio/httpx generator with the same concurrency when wrk is absent.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
# Replaced in a request body by a string unique to that request (e.g. an Observation identifier).
SEQ = "__SEQ__"
SYNTHETIC_NOTE = (
    "All data synthetic (training's simulator); the model is trained on synthetic data."
)


# ---- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin_dir() -> str:
    return str(Path(sys.executable).parent)


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # `mlflow models serve` runs `uvicorn` from PATH: the venv's must come first.
    env["PATH"] = f"{_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra or {})
    return env


def _tree_pids(pid: int) -> list[int]:
    """The process and its descendants (mlflow serve is a CLI that spawns uvicorn)."""
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        children = Path(f"/proc/{parent}/task/{parent}/children")
        try:
            kids = [int(k) for k in children.read_text().split()]
        except OSError:
            continue
        pids += kids
        frontier += kids
    return pids


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (VmRSS), NaN if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (/proc/<pid>/stat), NaN if it is gone.

    On a shared machine CPU time per request is steadier than wall-clock latency.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


@dataclass
class Server:
    """A server under test in its own process group (so stop() ends exactly what it started)."""

    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def serving_pid(self) -> int:
        """The process that answers requests: the deepest descendant (uvicorn under a CLI)."""
        return _tree_pids(self.pid)[-1]

    def rss_mb(self) -> float:
        return rss_mb(self.serving_pid())

    def cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the serving process has used so far."""
        return cpu_s(self.serving_pid())

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def wait_http(server: Server, path: str, timeout_s: float = 120) -> None:
    """Poll until ``path`` answers 200; fail early (with the log) if the process died."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited ({server.process.returncode}):\n{server.log_tail()}"
            )
        try:
            if httpx.get(server.base_url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{server.name} not ready after {timeout_s:.0f} s:\n{server.log_tail()}")


def start_process(
    name: str,
    argv: Sequence[str],
    port: int,
    workdir: Path,
    ready_path: str,
    env: dict[str, str] | None = None,
    timeout_s: float = 120,
) -> Server:
    """Start ``argv`` in a new process group, logging to ``workdir/<name>.log``; wait for ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(env),
            cwd=str(REPO_ROOT),
            start_new_session=True,
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log_path, workdir)
    wait_http(server, ready_path, timeout_s)
    return server


def service_settings_env(var_dir: Path, model_dir: Path) -> dict[str, str]:
    """Environment for our service: its own var dir and SQLite file, no scheduled jobs."""
    return {
        "TRIAGE_VAR_DIR": str(var_dir),
        "TRIAGE_DATABASE_URL": f"sqlite:///{(var_dir / 'triage.db').resolve()}",
        "TRIAGE_MODEL_DIR": str(model_dir),
        "TRIAGE_ENVIRONMENT": "development",
        # Scheduled jobs would land mid-measurement: the drift report competes for the two
        # cores, and the cohort re-scoring (60 s after start) holds SQLite's write lock for its
        # whole run. bench_scoring measures re-scoring on its own.
        "TRIAGE_DRIFT_SCHEDULE_HOURS": "0",
        "TRIAGE_RESCORE_SCHEDULE_HOURS": "0",
    }


def start_service(
    workdir: Path, model_dir: Path, *, extra_env: dict[str, str] | None = None
) -> Server:
    """`triage serve` (migrations, then uvicorn with one worker) on a free port."""
    port = free_port()
    var_dir = workdir / "var"
    var_dir.mkdir(parents=True, exist_ok=True)  # `triage serve` migrates before it makes var/
    env = {**service_settings_env(var_dir, model_dir), **(extra_env or {})}
    argv = [
        sys.executable,
        "-c",
        "from service.cli import main; main()",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return start_process("service", argv, port, workdir, "/readyz", env)


def service_settings(var_dir: Path, model_dir: Path) -> Any:
    """The Settings the server subprocess reads (same var dir: same dev signing key)."""
    from service.config import Settings

    return Settings(
        var_dir=var_dir,
        database_url=f"sqlite:///{(var_dir / 'triage.db').resolve()}",
        model_dir=model_dir,
        environment="development",
        drift_schedule_hours=0,
        rescore_schedule_hours=0,
    )


def dev_token(settings: Any, role: str, units: list[str] | None = None) -> str:
    from service.security.principal import Role
    from service.security.tokens import DEV_ORGANISATION, issue_dev_token

    return str(issue_dev_token(settings, Role(role), DEV_ORGANISATION, units))


def hello_world_app() -> Any:
    """The floor: FastAPI's own hello-world (one async route, no middleware)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/")
    async def read_root() -> dict[str, str]:
        return {"Hello": "World"}

    return app


def start_hello_world(workdir: Path) -> Server:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.common:hello_world_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return start_process("hello-world", argv, port, workdir, "/")


def log_onnx_to_mlflow(artifact_dir: Path, workdir: Path) -> str:
    """Log the artifact's model.onnx with the ONNX flavour to a local store; returns its URI.

    The signature is a float32 tensor [-1, n_features] named as the ONNX input, so the server
    casts JSON numbers the way our runtime feeds them.
    """
    import mlflow
    import numpy as np
    import onnx
    from mlflow.models import infer_signature

    onnx_model = onnx.load(str(artifact_dir / "model.onnx"))
    input_name = onnx_model.graph.input[0].name
    n_features = onnx_model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    example = {input_name: np.zeros((2, n_features), dtype=np.float32)}
    mlflow.set_tracking_uri(f"sqlite:///{(workdir / 'mlflow.db').resolve()}")
    experiment = mlflow.set_experiment("bench")
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        signature = infer_signature(example)
        info = mlflow.onnx.log_model(onnx_model, name="model", signature=signature)
    return str(info.model_uri)


def start_mlflow_serve(model_uri: str, workdir: Path) -> Server:
    """`mlflow models serve --env-manager local` with one worker, on a free port."""
    port = free_port()
    tracking = f"sqlite:///{(workdir / 'mlflow.db').resolve()}"
    argv = [
        str(Path(_bin_dir()) / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return start_process(
        "mlflow-serve",
        argv,
        port,
        workdir,
        "/ping",
        {"MLFLOW_TRACKING_URI": tracking},
        timeout_s=180,
    )


# ---- load generation ---------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers plus socket errors and timeouts
    tool: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str | None:
    """Path to wrk, installing the Debian package if missing (the bench's own setup)."""
    found = shutil.which("wrk")
    if found or os.environ.get("BENCH_NO_INSTALL"):
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if subprocess.run(["apt-get", "install", "-y", "wrk"], **quiet).returncode != 0:
            subprocess.run(["apt-get", "update"], **quiet)
            subprocess.run(["apt-get", "install", "-y", "wrk"], **quiet)
    return shutil.which("wrk")


def _lua_long_string(text: str) -> str:
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


_LUA = """
local bodies = {%(bodies)s}
local has_seq = %(has_seq)s
local n = #bodies
local counter = 0
local threads = {}
wrk.method = "%(method)s"

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  prefix = args[1] or "r"
end

request = function()
  counter = counter + 1
  if n == 0 then
    return wrk.format()
  end
  local body = bodies[(counter %% n) + 1]
  if has_seq then
    body = string.gsub(body, "%(seq)s", prefix .. "-" .. tid .. "-" .. counter)
  end
  return wrk.format(nil, nil, nil, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d,"
    .. " \\"status\\": %%d, \\"connect\\": %%d, \\"read\\": %%d, \\"write\\": %%d,"
    .. " \\"timeout\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass
class LoadSpec:
    url: str
    method: str
    headers: dict[str, str]
    bodies: list[str]
    concurrency: int
    duration_s: float
    prefix: str


def _wrk(wrk: str, spec: LoadSpec) -> LoadResult:
    url, headers, bodies, concurrency = spec.url, spec.headers, spec.bodies, spec.concurrency
    duration_s, prefix = spec.duration_s, spec.prefix
    has_seq = any(SEQ in b for b in bodies)
    script = _LUA % {
        "bodies": ",\n".join(_lua_long_string(b) for b in bodies),
        "has_seq": "true" if has_seq else "false",
        "method": spec.method,
        "seq": SEQ,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        script_path = f.name
    try:
        argv = [
            wrk,
            "-t",
            str(min(concurrency, 2)),
            "-c",
            str(concurrency),
            "-d",
            f"{max(1, round(duration_s))}s",
            "--timeout",
            "30s",
            "-s",
            script_path,
        ]
        for k, v in headers.items():
            argv += ["-H", f"{k}: {v}"]
        argv += [url, "--", prefix]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 120)
    finally:
        os.unlink(script_path)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {out.stdout[-500:]} {out.stderr[-500:]}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    errors = r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    return LoadResult(
        r["requests"], r["duration_us"] / 1e6, r["p50_us"] / 1e3, r["p99_us"] / 1e3, errors, "wrk"
    )


async def _httpx_load(spec: LoadSpec) -> LoadResult:
    import httpx
    import numpy as np

    url, method, headers, bodies = spec.url, spec.method, spec.headers, spec.bodies
    concurrency, duration_s, prefix = spec.concurrency, spec.duration_s, spec.prefix
    latencies: list[float] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + duration_s

    async def worker(client: httpx.AsyncClient, wid: int) -> None:
        nonlocal errors, counter
        while time.perf_counter() < deadline:
            counter += 1
            body = bodies[counter % len(bodies)] if bodies else None
            if body is not None and SEQ in body:
                body = body.replace(SEQ, f"{prefix}-{wid}-{counter}")
            started = time.perf_counter()
            try:
                r = await client.request(method, url, content=body, headers=headers)
                if not 200 <= r.status_code < 300:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client, w) for w in range(concurrency)))
    seconds = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return LoadResult(
        len(latencies),
        seconds,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 99)),
        errors,
        "httpx",
    )


def run_load(
    url: str,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    bodies: Sequence[str] = (),
    concurrency: int = 1,
    duration_s: float = 10,
    prefix: str = "r",
    tool: str = "auto",
) -> LoadResult:
    """Closed-loop load: ``concurrency`` connections for ``duration_s``; bodies round-robin.

    ``SEQ`` in a body is replaced per request by ``<prefix>-<thread>-<n>``: use a distinct
    ``prefix`` for each run against the same server so identifiers never repeat.
    """
    headers = dict(headers or {})
    wrk = ensure_wrk() if tool in ("auto", "wrk") else None
    if tool == "wrk" and wrk is None:
        raise RuntimeError("wrk is not installed and could not be installed")
    spec = LoadSpec(url, method, headers, list(bodies), concurrency, duration_s, prefix)
    return _wrk(wrk, spec) if wrk else asyncio.run(_httpx_load(spec))


# ---- reporting ---------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_note() -> str:
    """One line about where the figures came from (others may be using the cores meanwhile)."""
    load1, load5, _ = os.getloadavg()
    return (
        f"Machine: {os.cpu_count()} cores, load average {load1:.1f} (1 min) / {load5:.1f} "
        f"(5 min) at start; Python {sys.version.split()[0]}."
    )


def shipped_or_tiny_artifact(workdir: Path) -> tuple[Path, str]:
    """models/artifacts/default if present and loadable, else training's tiny artifact."""
    from models.artifact import SHIPPED_ARTIFACT_DIR

    if (SHIPPED_ARTIFACT_DIR / "manifest.json").exists():
        try:
            from models.runtime import OnnxRiskModel

            OnnxRiskModel(SHIPPED_ARTIFACT_DIR).load()
            return SHIPPED_ARTIFACT_DIR, "shipped default (models/artifacts/default)"
        except Exception as exc:  # any refusal: fall back and say why
            print(
                f"shipped artifact refused ({exc}); using training's tiny artifact", file=sys.stderr
            )
    from training.fixtures import build_tiny_artifact

    return build_tiny_artifact(workdir / "tiny-artifact"), "training.fixtures tiny artifact"
