"""Fixtures chained as the service is: model artifact → settings → migrated database → app → client.

PostgreSQL tests run when TRIAGE_TEST_DATABASE_URL is set (CI sets it) and skip visibly otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import build_handmade_artifact

POSTGRES_URL = os.environ.get("TRIAGE_TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small, valid additive model artifact (hand-set step functions, clinically directed)."""
    return build_handmade_artifact(tmp_path_factory.mktemp("artifact"))


def _admin(sql: str) -> None:
    from sqlalchemy import create_engine, text

    assert POSTGRES_URL
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both stores: the store tests run once on SQLite and once on PostgreSQL.

    Each PostgreSQL test gets a schema of its own (via search_path), so concurrent test runs
    against the same server never see each other's tables.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'triage.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip(
            "PostgreSQL not configured: set TRIAGE_TEST_DATABASE_URL to run store tests against it"
        )
    schema = f"t_{uuid.uuid4().hex[:16]}"
    _admin(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        _admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'triage.db'}"


@pytest.fixture
def make_settings(tmp_path: Path, artifact_dir: Path) -> Callable[..., object]:
    from service.config import Settings

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "var_dir": tmp_path / "var",
            "model_dir": artifact_dir,
            "environment": "test",
            "log_json": True,
            "drift_schedule_hours": 0,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def settings(make_settings: Callable[..., object], database_url: str) -> object:
    return make_settings(database_url=database_url)


@pytest.fixture
def app(settings: object) -> object:
    from service.app import create_app
    from tests.helpers import migrate_test_database as migrate

    migrate(settings.resolved_database_url)  # type: ignore[attr-defined]
    return create_app(settings)  # type: ignore[arg-type]


@pytest.fixture
def client(app: object) -> Iterator[TestClient]:
    with TestClient(app) as c:  # type: ignore[arg-type]
        yield c


@pytest.fixture
def auth(settings: object) -> Callable[..., dict[str, str]]:
    """`auth("clinician", units=["lungs"])` -> Authorization header for a dev token."""
    from service.security.principal import Role
    from service.security.tokens import DEV_ORGANISATION, issue_dev_token

    def headers(
        role: str,
        organisation: str = DEV_ORGANISATION,
        units: list[str] | None = None,
        subject: str | None = None,
    ) -> dict[str, str]:
        token = issue_dev_token(settings, Role(role), organisation, units, subject)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}

    return headers
