"""Interop fixtures: patients with a history, and a real uvicorn server for third-party clients."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import enrol, observation, post_fhir

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# Valid synthetic fødselsnumre (classic check digits), one per test patient.
FNRS = ("15076500565", "01017000027", "12035510018", "23084820075", "07095220082", "11056020065")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def history(
    pid: str, last_spo2: float, prefix: str, days: int = 10, last_at: datetime = NOW
) -> dict[str, Any]:
    """A batch Bundle: `days` stable days (SpO2 96 %, pulse 72), then one SpO2 of `last_spo2`."""
    messages = []
    for d in range(days, 0, -1):
        when = last_at - timedelta(days=d)
        messages += [
            observation(pid, "spo2", 96, when, f"{prefix}-s{d}"),
            observation(pid, "heart_rate", 72, when, f"{prefix}-h{d}"),
        ]
    messages.append(observation(pid, "spo2", last_spo2, last_at, f"{prefix}-last"))
    return {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": m} for m in messages]}


def send_spo2(
    client: Any, headers: dict[str, str], pid: str, value: float, at: datetime, message_id: str
) -> None:
    response = post_fhir(
        client, "/fhir/Observation", observation(pid, "spo2", value, at, message_id), headers
    )
    assert response.status_code in (200, 201), response.text


@pytest.fixture
def patient_with_history(
    client: Any, auth: Callable[..., dict[str, str]]
) -> Callable[..., dict[str, Any]]:
    """`patient_with_history(last_spo2=86)` -> the enrolled patient, after its history arrived."""
    used = iter(range(len(FNRS)))

    def make(last_spo2: float = 86, unit: str = "lungs", **extra: Any) -> dict[str, Any]:
        i = next(used)
        patient = enrol(
            client,
            auth("clinician"),
            identifier=FNRS[i],
            unit=unit,
            birth_date=_birth_date(FNRS[i]),
            **extra,
        )
        response = post_fhir(
            client, "/fhir", history(patient["id"], last_spo2, f"p{i}"), auth("integration")
        )
        assert response.status_code == 200, response.text
        return patient

    return make


def _birth_date(fnr: str) -> str:
    from models.identifiers import parse_person_identifier

    return str(parse_person_identifier(fnr).birth_date)


class LiveServer:
    """The app under uvicorn on 127.0.0.1:<free port>, in a thread (for clients that need a
    socket: tritonclient cannot use TestClient)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(app: Any) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="module")
def ro_settings(tmp_path_factory: pytest.TempPathFactory, artifact_dir: Any) -> Any:
    """One migrated database per test module, for tests that only read (V2 needs no data)."""
    from service.config import Settings
    from tests.helpers import migrate_test_database as migrate

    root = tmp_path_factory.mktemp("interop")
    settings = Settings(
        var_dir=root / "var",
        model_dir=artifact_dir,
        environment="test",
        database_url=f"sqlite:///{root / 'triage.db'}",
        drift_schedule_hours=0,
    )
    migrate(settings.resolved_database_url)
    return settings


@pytest.fixture(scope="module")
def ro_client(ro_settings: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(ro_settings)) as client:
        yield client


@pytest.fixture(scope="module")
def ro_auth(ro_settings: Any) -> Callable[..., dict[str, str]]:
    from service.security.principal import Role
    from service.security.tokens import issue_dev_token

    tokens: dict[str, str] = {}

    def headers(role: str) -> dict[str, str]:
        if role not in tokens:
            tokens[role] = issue_dev_token(ro_settings, Role(role))
        return {"Authorization": f"Bearer {tokens[role]}"}

    return headers
