"""`make replicas`: two replicas of the service and a load balancer in front, on this machine.

1. Migrations run once, here, before any replica starts (`triage migrate`).
2. Two replicas (`triage serve --workers 1`) on ports 8001 and 8002, sharing the database and the
   var folder (one development signing key).
3. HAProxy from Debian on port 8000 (installed with apt-get when missing and we are root), which
   sends traffic only to replicas whose /readyz answers 200. Where HAProxy cannot be had, a small
   TCP round-robin proxy in this process does the same job.

The database: TRIAGE_DATABASE_URL (PostgreSQL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/
test); without it, a SQLite file under var/replicas (fine to try, not for real use: one writer at
a time across processes). `--check` starts everything, sends requests through the balancer,
checks that both replicas answered and that stopping one leaves the service up, then stops.
Ctrl-C stops everything this script started. TRIAGE_BALANCER_PORT moves it all (default 8000,
replicas on the next two ports).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BALANCER_PORT = int(os.environ.get("TRIAGE_BALANCER_PORT", "8000"))
# The replicas listen on the next two ports.
REPLICA_PORTS = (BALANCER_PORT + 1, BALANCER_PORT + 2)

HAPROXY_CONFIG = """\
global
    maxconn 2048
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # A request that found a replica gone (connection refused) goes to the other one.
    retries 2
    option redispatch
frontend triage
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    # Readiness, not liveness: a replica whose model or database is not ready gets no traffic.
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 1
{servers}
"""


def _env(var_dir: Path, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TRIAGE_DATABASE_URL"] = database_url
    env["TRIAGE_VAR_DIR"] = str(var_dir)
    return env


def _triage(*args: str) -> list[str]:
    return [sys.executable, "-c", "from service.cli import main; main()", *args]


def ensure_haproxy() -> str | None:
    """The haproxy binary; installs Debian's package when missing and allowed. None: use ours."""
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("installing HAProxy from Debian (apt-get install haproxy) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "haproxy"], ["apt-get", "update"]):
        subprocess.run(command, env=env, check=False, capture_output=True)
        if command[1] == "update":
            subprocess.run(
                ["apt-get", "install", "-y", "haproxy"], env=env, check=False, capture_output=True
            )
        if Path("/usr/sbin/haproxy").exists():
            return "/usr/sbin/haproxy"
    return None


class TcpBalancer:
    """Fallback balancer: round-robin over replicas whose /readyz answered 200 last time."""

    def __init__(self, port: int, backends: list[int]) -> None:
        self.port, self.backends = port, backends
        self.healthy: list[int] = []
        self._next = 0

    async def _check(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                healthy = []
                for port in self.backends:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                            healthy.append(port)
                self.healthy = healthy
                await asyncio.sleep(1)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(max(len(self.healthy), 1)):
            if not self.healthy:
                break
            port = self.healthy[self._next % len(self.healthy)]
            self._next += 1
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            return
        writer.close()

    async def run(self) -> None:
        checker = asyncio.create_task(self._check())
        server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        async with server:
            try:
                await server.serve_forever()
            finally:
                checker.cancel()


def start_balancer(workdir: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    haproxy = ensure_haproxy()
    if haproxy:
        servers = "\n".join(
            f"    server r{i} 127.0.0.1:{port} check" for i, port in enumerate(REPLICA_PORTS, 1)
        )
        config = workdir / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(port=BALANCER_PORT, servers=servers))
        check = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused {config}: {check.stdout}{check.stderr}")
        log = (workdir / "haproxy.log").open("wb")
        process = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        return f"HAProxy ({haproxy})", process
    balancer = TcpBalancer(BALANCER_PORT, list(REPLICA_PORTS))
    threading.Thread(target=lambda: asyncio.run(balancer.run()), daemon=True).start()
    return "the built-in TCP round-robin proxy (HAProxy not available)", None


def wait_ready(url: str, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s")


def check(replicas: list[subprocess.Popen[bytes]]) -> None:
    """Both replicas answer through the balancer; with one stopped, the service stays up."""
    import httpx

    base = f"http://127.0.0.1:{BALANCER_PORT}"
    seen = set()
    for _ in range(20):
        with httpx.Client() as fresh:  # a new connection each time: round-robin per connection
            response = fresh.get(f"{base}/readyz", timeout=5)
            assert response.status_code == 200, response.text
            seen.add(response.headers.get("x-triage-replica", ""))
    os.killpg(replicas[1].pid, signal.SIGTERM)
    replicas[1].wait(30)
    time.sleep(2.5)  # the balancer's health check marks it down
    answers = [httpx.get(f"{base}/healthz", timeout=5).status_code for _ in range(10)]
    assert answers == [200] * 10, answers
    print(
        f"check passed: replicas seen through the balancer: {sorted(seen)}; one stopped, "
        "the service still answered 10 of 10"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="start, check, stop")
    args = parser.parse_args()
    workdir = Path(os.environ.get("TRIAGE_REPLICAS_DIR") or REPO_ROOT / "var" / "replicas")
    workdir.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("TRIAGE_DATABASE_URL") or f"sqlite:///{workdir / 'triage.db'}"
    env = _env(workdir / "var", database_url)
    print("migrating once, before the replicas start ...", flush=True)
    subprocess.run(_triage("migrate"), env=env, check=True, cwd=REPO_ROOT)
    replicas: list[subprocess.Popen[bytes]] = []
    balancer: subprocess.Popen[bytes] | None = None
    try:
        for i, port in enumerate(REPLICA_PORTS, 1):
            log = (workdir / f"replica-{i}.log").open("wb")
            replicas.append(
                subprocess.Popen(
                    _triage("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO_ROOT,
                    start_new_session=True,
                )
            )
            wait_ready(f"http://127.0.0.1:{port}/readyz")
        kind, balancer = start_balancer(workdir)
        wait_ready(f"http://127.0.0.1:{BALANCER_PORT}/readyz")
        print(
            f"two replicas on {', '.join(map(str, REPLICA_PORTS))} behind {kind} on "
            f"http://127.0.0.1:{BALANCER_PORT} (database: {database_url.split('@')[-1]}); "
            f"logs in {workdir}",
            flush=True,
        )
        if args.check:
            check(replicas)
            return
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.poll() is None for p in replicas):
                time.sleep(1)
    finally:
        for process in replicas:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in replicas:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
        if balancer is not None:
            balancer.terminate()
            balancer.wait(10)


if __name__ == "__main__":
    main()
