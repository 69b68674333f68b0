"""N real replicas (`triage serve` subprocesses, PYTHONPATH set) on one PostgreSQL database.

Used by the multi-replica test (tests/service/test_replicas.py) and by bench/bench_replicas.py.
Every replica shares the var folder (so one development signing key) and the database; each
logs to its own file, which the test scans for national identity numbers afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_schema(base_url: str, prefix: str = "replicas") -> Iterator[str]:
    """A fresh schema on the server (dropped afterwards); yields a URL whose search_path is it."""
    from sqlalchemy import create_engine, text

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@dataclass
class Replica:
    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class ReplicaSet:
    """Start, kill -9, restart and stop replicas of the service on one database."""

    database_url: str
    workdir: Path
    model_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)

    @property
    def var_dir(self) -> Path:
        return self.workdir / "var"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": str(REPO_ROOT),
                "TRIAGE_DATABASE_URL": self.database_url,
                "TRIAGE_VAR_DIR": str(self.var_dir),
                "TRIAGE_MODEL_DIR": str(self.model_dir),
                "TRIAGE_ENVIRONMENT": "test",
                "TRIAGE_LOG_JSON": "true",
                "TRIAGE_DRIFT_SCHEDULE_HOURS": "0",
                "TRIAGE_RESCORE_SCHEDULE_HOURS": "0",
                **self.extra_env,
            }
        )
        return env

    def settings(self) -> object:
        """The Settings the replicas read (same var dir: same development signing key)."""
        from service.config import Settings

        return Settings(
            var_dir=self.var_dir,
            database_url=self.database_url,
            model_dir=self.model_dir,
            environment="test",
        )

    def add(self, count: int = 1) -> list[Replica]:
        added = []
        for _ in range(count):
            n = len(self.replicas)
            replica = Replica(f"replica-{n}", free_port(), self.workdir / f"replica-{n}.log")
            self.replicas.append(replica)
            added.append(replica)
        return added

    def start(self, replica: Replica, timeout_s: float = 90) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        with replica.log_path.open("ab") as log:
            replica.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from service.cli import main; main()",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(replica.port),
                    "--workers",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=str(REPO_ROOT),
                start_new_session=True,
            )
        self.wait_ready(replica, timeout_s)

    def wait_ready(self, replica: Replica, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not replica.alive():
                raise RuntimeError(f"{replica.name} exited:\n{self.log_tail(replica)}")
            try:
                if httpx.get(f"{replica.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{replica.name} not ready in {timeout_s} s:\n{self.log_tail(replica)}")

    def kill_9(self, replica: Replica) -> None:
        """SIGKILL: no shutdown, no flush, in-flight requests cut off."""
        assert replica.process is not None
        os.killpg(replica.process.pid, signal.SIGKILL)
        replica.process.wait(10)

    def stop(self, replica: Replica, timeout_s: float = 20) -> None:
        if not replica.alive():
            return
        assert replica.process is not None
        try:
            os.killpg(replica.process.pid, signal.SIGTERM)
            replica.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(replica.process.pid, signal.SIGKILL)
            replica.process.wait(5)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for replica in self.replicas:
            self.stop(replica)

    def log_tail(self, replica: Replica, chars: int = 3000) -> str:
        try:
            return replica.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def logs(self) -> str:
        return "\n".join(r.log_path.read_text(errors="replace") for r in self.replicas)

    def __enter__(self) -> ReplicaSet:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_all()
