"""Schemathesis against /openapi.json (in-process ASGI) with an authorised token: no 5xx, ever.

Every operation in the schema gets its share of about TARGET_CASES generated cases
(schemathesis generates both schema-valid and schema-violating inputs), at least 1,000 in all. Failures
are collected per operation with a curl line to reproduce them.
(schemathesis' pytest plugin does not work with pytest 9 yet, so hypothesis drives it here.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings

from tests.helpers import FNR_ADULT, enrol, observation, post_fhir

MIN_TOTAL_CASES = 1000
# Examples per operation: enough for MIN_TOTAL_CASES with margin (small input spaces run out).
TARGET_CASES = 1700


class Findings:
    def __init__(self) -> None:
        self.cases = 0
        self.failures: list[str] = []


def _our_frame(exc: BaseException) -> str:
    import traceback

    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if "/site-packages/" not in f.filename
    ]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _fuzz_operation(operation: Any, auth: dict[str, str], examples: int) -> Findings:
    findings = Findings()

    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        findings.cases += 1
        try:
            response = case.call(headers=auth)
        except Exception as exc:  # the in-process client re-raises what would be a 500
            where = _our_frame(exc)
            findings.failures.append(
                f"raised {type(exc).__name__}: {str(exc)[:120]} at {where}"
                f"\n    {case.as_curl_command()}"
            )
            return
        if response.status_code >= 500 or FNR_ADULT in response.text:
            findings.failures.append(
                f"{response.status_code} {case.as_curl_command()}\n    {response.text[:200]}"
            )

    run()
    return findings


def test_no_server_errors_on_generated_input(app: Any, settings: Any) -> None:
    from service.security.principal import Role
    from service.security.tokens import issue_dev_token

    with TestClient(app) as client:  # the real lifespan; the fuzzer then calls the same app
        integration = {"Authorization": "Bearer " + issue_dev_token(settings, Role.INTEGRATION)}
        patient = enrol(client, integration)
        post_fhir(
            client,
            "/fhir/Observation",
            observation(patient["id"], "spo2", 88, datetime.now(UTC), "fuzz-1"),
            integration,
        )
        auth = {"Authorization": "Bearer " + issue_dev_token(settings, Role.ADMIN)}
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        cases = 0
        failures: list[str] = []
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 30
        per_operation = max(25, min(80, -(-TARGET_CASES // len(operations))))

        for operation in operations:
            seen = _fuzz_operation(operation, auth, per_operation)
            cases += seen.cases
            failures.extend(
                f"{operation.method.upper()} {operation.path}: {f}" for f in seen.failures[:3]
            )

    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures)
    assert cases >= MIN_TOTAL_CASES, f"only {cases} generated cases"
