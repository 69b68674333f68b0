"""One logging configuration for the whole process: under a real uvicorn, the server's own
"Exception in ASGI application" traceback, a library's log line and a Python warning all leave
through the redacting handler, so no fødselsnummer reaches the server's output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import FNR_ADULT, migrate_test_database

# The server: the service's app with one extra outermost layer that fails the way a database
# error once did, quoting the key; the route is not in the policy, so nothing else reaches it.
SERVER = """
import logging, sys, warnings
import uvicorn
from service.app import create_app
from service.config import Settings
from service.observability import configure_logging

FNR = sys.argv[2]
settings = Settings()
configure_logging(settings.log_json)  # what `triage serve` does before uvicorn.run
app = create_app(settings)


class FailsOnBoom:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/boom":
            logging.getLogger("sqlalchemy.engine").warning("library says: person %s", FNR)
            warnings.warn(f"a warning naming {FNR}", stacklevel=1)
            raise RuntimeError(f"Key (identifier_value)=({FNR}) already exists")
        await self.app(scope, receive, send)


app.add_middleware(FailsOnBoom)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None)
"""

ELEVEN_DIGITS = re.compile(r"(?<!\d)\d{11}(?!\d)")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "text"])
def test_server_and_library_log_lines_are_redacted_under_uvicorn(
    tmp_path: Path, artifact_dir: Path, json_lines: bool
) -> None:
    database_url = f"sqlite:///{tmp_path / 'triage.db'}"
    migrate_test_database(database_url)
    port = _free_port()
    env = {
        "PATH": str(Path(sys.executable).parent),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "TRIAGE_DATABASE_URL": database_url,
        "TRIAGE_VAR_DIR": str(tmp_path / "var"),
        "TRIAGE_MODEL_DIR": str(artifact_dir),
        "TRIAGE_ENVIRONMENT": "test",
        "TRIAGE_LOG_JSON": "true" if json_lines else "false",
        "TRIAGE_DRIFT_SCHEDULE_HOURS": "0",
        "TRIAGE_RESCORE_SCHEDULE_HOURS": "0",
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), FNR_ADULT],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        response = httpx.get(f"{base}/boom", timeout=10)
        assert response.status_code == 500
        assert FNR_ADULT not in response.text
        # The server logs after it answered: wait (bounded) for the traceback to be written.
        for _ in range(50):
            if "Exception in ASGI application" in log_path.read_text():
                break
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(15)
    output = log_path.read_text()
    assert "Exception in ASGI application" in output  # the server's own line is there …
    assert "already exists" in output and "library says" in output and "a warning naming" in output
    assert "[redacted-id]" in output
    assert not ELEVEN_DIGITS.search(output), output  # … and no 11-digit number anywhere
    if json_lines:  # every line, uvicorn's included, is one JSON object from our formatter
        lines = [line for line in output.splitlines() if line.strip()]
        loggers = {json.loads(line)["logger"] for line in lines}
        assert {"uvicorn.error", "sqlalchemy.engine", "py.warnings"} <= loggers
