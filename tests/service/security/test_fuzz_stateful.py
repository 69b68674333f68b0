"""Stateful schemathesis run against PostgreSQL: sequences of calls that follow the OpenAPI links
(enrol -> read, assess, set a target, add an override; worklist -> act on an item -> act again
with its ETag as If-Match), generated data at every step. No answer may be a 5xx, and no answer
may echo the person number."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings

from tests.helpers import FNR_ADULT, enrol, observation, post_fhir


@pytest.fixture
def settings(make_settings, any_database_url):
    if not any_database_url.startswith("postgresql"):
        pytest.skip("the stateful run is the PostgreSQL one; test_fuzz covers SQLite")
    return make_settings(database_url=any_database_url)


@pytest.mark.postgres
@pytest.mark.parametrize("any_database_url", ["postgres"], indirect=True)
def test_no_server_error_along_the_openapi_links_on_postgresql(app: Any, settings: Any) -> None:
    from service.security.principal import Role
    from service.security.tokens import issue_dev_token

    with TestClient(app) as client:
        integration = {"Authorization": "Bearer " + issue_dev_token(settings, Role.INTEGRATION)}
        patient = enrol(client, integration)
        now = datetime.now(UTC).replace(microsecond=0)
        for day in range(6, -1, -1):  # a stable week, then a low SpO2: an open worklist item
            post_fhir(
                client,
                "/fhir/Observation",
                observation(
                    patient["id"], "spo2", 96 if day else 84, now - timedelta(days=day), f"sf-{day}"
                ),
                integration,
            )
        assert client.get("/api/v1/worklist", headers=integration).status_code in (200, 403)
        clinician = {"Authorization": "Bearer " + issue_dev_token(settings, Role.CLINICIAN)}
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures: list[str] = []
        steps = [0]
        linked: set[str] = set()  # operations reached with a value taken from an earlier answer
        reached: set[str] = set()

        class Machine(schema.as_state_machine()):  # type: ignore[misc]
            def get_call_kwargs(self, case: Any) -> dict[str, Any]:
                return {"headers": {**clinician, **(case.headers or {})}}

            def validate_response(self, response: Any, case: Any, **_: Any) -> None:
                steps[0] += 1
                if "{" in case.operation.path:
                    reached.add(f"{case.method} {case.operation.path} {response.status_code}")
                if response.status_code < 400 and "{" in case.operation.path:
                    linked.add(f"{case.method} {case.operation.path}")
                if response.status_code >= 500 or FNR_ADULT in response.text:
                    failures.append(
                        f"{response.status_code} {case.as_curl_command()}\n"
                        f"    {response.text[:200]}"
                    )

        Machine.run(
            settings=hypothesis_settings(
                max_examples=40,
                stateful_step_count=6,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
        )
    print("stateful steps:", steps[0], "linked operations answered < 400:", sorted(linked))
    print("reached:", sorted(reached))
    assert steps[0] >= 40
    assert linked  # the links were followed: an id from one answer was used in the next call
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:10])
