"""V2 inference side by side: our service vs `mlflow models serve` vs a hello-world FastAPI app.

Run: ``python -m bench.bench_v2 [--duration 5] [--json out.json]``. All three run on 127.0.0.1
with one uvicorn worker each, on the same ONNX model (MLflow gets it through
``mlflow.onnx.log_model`` into a throw-away local store and serves it with
``--env-manager local``), and are loaded by the same generator: wrk when installed (``apt-get
install -y wrk``), else a Python asyncio/httpx fallback. Targets (issue 6): one-row infer at
concurrency 8 reaches >= 2x mlflow's throughput and >= 60 % of hello-world's; a batch of 1,000
rows answers in <= 20 ms. Numbers depend on the machine: compare within one run, not across.
The model is trained on synthetic data; this measures serving speed, not clinical performance.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI, Request

from models.artifact import SHIPPED_ARTIFACT_DIR
from models.features import N_FEATURES

PYTHON = sys.executable


# ---- servers --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout_s} s")


@contextmanager
def serve(name: str, cmd: list[str], health_path: str, port: int, env: dict[str, str],
          log_dir: Path) -> Iterator[Server]:
    log = (log_dir / f"{name}.log").open("wb")
    process = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=log,
                               start_new_session=True)  # its own group: mlflow forks workers
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_up(base + health_path, process)
        except RuntimeError:
            log.flush()
            print((log_dir / f"{name}.log").read_text(errors="replace")[-2000:], file=sys.stderr)
            raise
        yield Server(name, base, process)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def uvicorn_cmd(app: str, port: int, factory: bool = True) -> list[str]:
    cmd = [PYTHON, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--no-access-log", "--log-level", "warning"]
    return [*cmd, "--factory"] if factory else cmd


def service_env(workdir: Path, model_dir: Path) -> dict[str, str]:
    return {"TRIAGE_VAR_DIR": str(workdir / "var"), "TRIAGE_ENVIRONMENT": "development",
            "TRIAGE_DATABASE_URL": f"sqlite:///{workdir / 'var' / 'triage.db'}",
            "TRIAGE_MODEL_DIR": str(model_dir), "TRIAGE_LOG_JSON": "true",
            "TRIAGE_DRIFT_SCHEDULE_HOURS": "0"}


def prepare_service(workdir: Path, model_dir: Path) -> dict[str, str]:
    """Migrate the database; returns the environment the service process needs."""
    from service.db.engine import migrate

    env = service_env(workdir, model_dir)
    (workdir / "var").mkdir(parents=True, exist_ok=True)
    migrate(env["TRIAGE_DATABASE_URL"])
    return env


def dev_token(env: dict[str, str], role: str) -> str:
    from service.config import Settings
    from service.security.principal import Role
    from service.security.tokens import issue_dev_token

    settings = Settings(var_dir=Path(env["TRIAGE_VAR_DIR"]), environment="development")
    return issue_dev_token(settings, Role(role), lifetime_s=3600)


def hello_app() -> FastAPI:
    """The floor: FastAPI + uvicorn reading a body and answering a constant."""
    app = FastAPI()

    @app.post("/v2/models/hello/infer")
    async def hello(request: Request) -> dict[str, str]:
        await request.body()
        return {"hello": "world"}

    @app.get("/")
    def root() -> dict[str, str]:
        return {"hello": "world"}

    return app


def log_to_mlflow(model_dir: Path, store: Path) -> str:
    """Log the same ONNX file to a local MLflow store; returns the model URI to serve."""
    import mlflow
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    mlflow.set_experiment("bench-v2")
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, N_FEATURES), "features")]),
        outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,), "probability"),
                        TensorSpec(np.dtype(np.float64), (-1,), "logit"),
                        TensorSpec(np.dtype(np.float64), (-1, N_FEATURES), "contributions")]))
    with mlflow.start_run():
        info = mlflow.onnx.log_model(onnx.load(str(model_dir / "model.onnx")), name="model",
                                     signature=signature)
    return str(info.model_uri)


# ---- load generation --------------------------------------------------------------------------

@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk(url: str, body: bytes, headers: dict[str, str], concurrency: int, duration_s: float,
         workdir: Path) -> Load:
    body_file = workdir / f"body-{abs(hash(body))}.bin"
    body_file.write_bytes(body)
    lines = [f'local f = io.open("{body_file}", "rb")', "wrk.body = f:read(\"*a\")", "f:close()",
             'wrk.method = "POST"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script = workdir / "post.lua"
    script.write_text("\n".join(lines) + "\n")
    seconds = max(1, round(duration_s))  # wrk takes whole seconds
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True
                         ).stdout

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m.group(1)) * _UNITS_MS[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (
        sum(int(g) for g in socket_errors.groups()) if socket_errors else 0)
    return Load(rps, latency("50"), latency("99"), total, errors, "wrk")


async def _python_load_async(url: str, body: bytes, headers: dict[str, str], concurrency: int,
                             duration_s: float) -> Load:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            errors += response.status_code >= 300

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1e3
    return Load(len(ms) / elapsed, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                len(ms), errors, "python-httpx")


def load(url: str, body: bytes, headers: dict[str, str], concurrency: int, duration_s: float,
         workdir: Path, warmup_s: float = 1.0) -> Load:
    """Warm up, then measure; wrk when installed, else the Python fallback."""
    probe = httpx.post(url, content=body, headers=headers, timeout=30)
    if probe.status_code >= 300:
        raise RuntimeError(f"{url} answered {probe.status_code}: {probe.text[:300]}")
    if shutil.which("wrk"):
        _wrk(url, body, headers, concurrency, warmup_s, workdir)
        return _wrk(url, body, headers, concurrency, duration_s, workdir)
    asyncio.run(_python_load_async(url, body, headers, concurrency, warmup_s))
    return asyncio.run(_python_load_async(url, body, headers, concurrency, duration_s))


# ---- the benchmark ------------------------------------------------------------------------------

def feature_rows(n: int, seed: int = 0) -> np.ndarray:
    """Rows with two decimals, as a client would send measurements (float64, so JSON carries
    "1.23" and not float32's "1.2300000190734863")."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, 3, size=(n, N_FEATURES)), 2)


def v2_body(X: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "features", "datatype": "FP32",
                                   "shape": list(X.shape), "data": X.tolist()}]}).encode()


def v2_binary_body(X: np.ndarray) -> tuple[bytes, dict[str, str]]:
    blob = X.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "features", "datatype": "FP32",
                                     "shape": list(X.shape),
                                     "parameters": {"binary_data_size": len(blob)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


def mlflow_body(X: np.ndarray) -> bytes:
    return json.dumps({"inputs": {"features": X.tolist()}}).encode()


def table(rows: list[tuple[str, Load | str]]) -> str:
    out = ["| measurement | tool | req/s | p50 ms | p99 ms | requests | errors |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        if isinstance(r, str):
            out.append(f"| {name} | – | – | – | – | – | {r} |")
        else:
            out.append(f"| {name} | {r.tool} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                       f"{r.requests:,} | {r.errors} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--model-dir", type=Path, default=SHIPPED_ARTIFACT_DIR)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from models.artifact import Manifest

    model_name = Manifest.read(args.model_dir).name
    results: dict[str, Load | str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-v2-") as tmp:
        work = Path(tmp)
        env = prepare_service(work, args.model_dir)
        token = dev_token(env, "ml-engineer")
        mlflow_uri = log_to_mlflow(args.model_dir, work)
        ours_port, mlflow_port, hello_port = free_port(), free_port(), free_port()
        one, batch = feature_rows(1), feature_rows(1000, seed=1)
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        json_only = {"Content-Type": "application/json"}
        mlflow_cmd = [PYTHON, "-m", "mlflow", "models", "serve", "-m", mlflow_uri,
                      "--env-manager", "local", "-h", "127.0.0.1", "-p", str(mlflow_port),
                      "-w", "1"]
        # mlflow execs `uvicorn` by name: the venv's bin must be on PATH.
        mlflow_env = {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
                      "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

        with serve("ours", uvicorn_cmd("service.app:create_app", ours_port), "/v2/health/ready",
                   ours_port, env, work) as ours:
            url = f"{ours.base_url}/v2/models/{model_name}/infer"
            for c in (1, 8):
                results[f"ours V2 infer, 1 row, c={c}"] = load(
                    url, v2_body(one), auth, c, args.duration, work)
            results["ours V2 infer, 1,000 rows JSON, c=1"] = load(
                url, v2_body(batch), auth, 1, args.duration, work)
            body, extra = v2_binary_body(batch)
            try:
                results["ours V2 infer, 1,000 rows binary tensors, c=1"] = load(
                    url, body, {**auth, **extra, "Content-Type": "application/octet-stream"}, 1,
                    args.duration, work)
            except RuntimeError as exc:  # the security input guard may refuse octet-stream
                results["ours V2 infer, 1,000 rows binary tensors, c=1"] = f"refused: {exc}"[:90]
        with serve("mlflow", mlflow_cmd, "/ping", mlflow_port, mlflow_env, work) as mlf:
            url = f"{mlf.base_url}/invocations"
            for c in (1, 8):
                results[f"mlflow serve, 1 row, c={c}"] = load(
                    url, mlflow_body(one), json_only, c, args.duration, work)
            results["mlflow serve, 1,000 rows, c=1"] = load(
                url, mlflow_body(batch), json_only, 1, args.duration, work)
        with serve("hello", uvicorn_cmd("bench.bench_v2:hello_app", hello_port), "/",
                   hello_port, {}, work) as hello:
            url = f"{hello.base_url}/v2/models/hello/infer"
            for c in (1, 8):
                results[f"hello-world FastAPI, c={c}"] = load(
                    url, v2_body(one), json_only, c, args.duration, work)

    print("V2 inference (one uvicorn worker each; model trained on synthetic data)\n")
    print(table(list(results.items())))
    ours8, mlf8 = results["ours V2 infer, 1 row, c=8"], results["mlflow serve, 1 row, c=8"]
    hello8 = results["hello-world FastAPI, c=8"]
    batch_json = results["ours V2 infer, 1,000 rows JSON, c=1"]
    ratios: dict[str, float] = {}
    if isinstance(ours8, Load) and isinstance(mlf8, Load) and isinstance(hello8, Load):
        ratios["one row c=8: ours / mlflow serve throughput (target >= 2)"] = ours8.rps / mlf8.rps
        ratios["one row c=8: ours / hello-world throughput (target >= 0.6)"] = (
            ours8.rps / hello8.rps)
    if isinstance(batch_json, Load):
        ratios["1,000 rows JSON: p50 ms (target <= 20)"] = batch_json.p50_ms
    print()
    for name, value in ratios.items():
        print(f"- {name}: {value:.2f}")
    report = {"results": {k: asdict(v) if isinstance(v, Load) else v for k, v in results.items()},
              "ratios": ratios}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
