"""Web page fixtures: an HTTPS TestClient (the session cookie is Secure) and a dev sign-in helper."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient


def form_fields(html: str, action_contains: str = "") -> dict[str, str]:
    """The hidden and text inputs of the first form whose action contains ``action_contains``."""
    for match in re.finditer(r"<form[^>]*action=\"([^\"]*)\"[^>]*>(.*?)</form>", html, re.S):
        if action_contains in unescape(match.group(1)):
            fields = {}
            for inp in re.finditer(r"<input([^>]*)>", match.group(2)):
                attrs = dict(re.findall(r"(\w[\w-]*)=\"([^\"]*)\"", inp.group(1)))
                if "name" in attrs and attrs.get("type") not in ("radio", "checkbox"):
                    fields[attrs["name"]] = unescape(attrs.get("value", ""))
            return fields
    raise AssertionError(f"no form with action containing {action_contains!r}")


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def sign_in(client: TestClient, role: str = "clinician", units: str = "", subject: str = "") -> Any:
    """The whole authorization-code + PKCE flow against the development issuer."""
    start = client.get("/web/sign-in/start", follow_redirects=False)
    assert start.status_code == 303, start.text
    picker = client.get(start.headers["location"], follow_redirects=False)
    assert picker.status_code == 200, picker.text
    fields = form_fields(picker.text, "/web/dev-issuer/authorize")
    fields.update(role=role, units=units, subject=subject)
    code = client.post("/web/dev-issuer/authorize", data=fields, follow_redirects=False)
    assert code.status_code == 303, code.text
    back = client.get(code.headers["location"], follow_redirects=False)
    assert back.status_code == 303, back.text
    return back


class WebEnv:
    """One seeded app per test module: the cohort takes seconds to ingest."""

    def __init__(self, settings: Any, client: TestClient, ids: dict[str, str]) -> None:
        self.settings = settings
        self.client = client
        self.ids = ids

    def headers(self, role: str, **kwargs: Any) -> dict[str, str]:
        from service.security.principal import Role
        from service.security.tokens import issue_dev_token

        return {"Authorization": f"Bearer {issue_dev_token(self.settings, Role(role), **kwargs)}"}


def make_settings_for(tmp: Path, artifact_dir: Path) -> Any:
    from service.config import Settings

    return Settings(
        var_dir=tmp / "var",
        model_dir=artifact_dir,
        environment="test",
        drift_schedule_hours=0,
        database_url=f"sqlite:///{tmp / 'web.db'}",
    )


@pytest.fixture(scope="module")
def web_env(tmp_path_factory: pytest.TempPathFactory, artifact_dir: Path) -> Iterator[WebEnv]:
    from service.app import create_app
    from tests.helpers import migrate_test_database as migrate
    from tests.web.seed import seed_cohort

    settings = make_settings_for(tmp_path_factory.mktemp("web"), artifact_dir)
    migrate(settings.resolved_database_url)
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        env = WebEnv(settings, client, {})
        env.ids = seed_cohort(client, env.headers("integration"))
        yield env


@pytest.fixture
def web(web_env: WebEnv) -> TestClient:
    web_env.client.cookies.clear()
    return web_env.client


@pytest.fixture
def signed_in(web: TestClient) -> Callable[..., TestClient]:
    def go(role: str = "clinician", **kwargs: Any) -> TestClient:
        web.cookies.clear()
        sign_in(web, role, **kwargs)
        return web

    return go
