"""A small cohort fed through the real ingestion API, and an app whose model has a reference.

Seeded once per session (the ingestion is the slow part): two organisations, the second with a
scale that sends pounds labelled as kilograms from day 4 (a device fault: data quality). Drift
thresholds are the defaults except the window sizes, which a 12-patient cohort cannot meet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import ORG

OTHER_ORG = "974557746"
POUNDS_PER_KG = 2.20462
N_PATIENTS = 12
DAYS = 10
SEED = 9  # three deteriorations among the 12 patients
# Window sizes a 12-patient cohort can meet; every threshold stays the default. Evidently's HTML
# takes most of a report's time, so only the tests about HTML turn it on.
SMALL_WINDOWS = {
    "min_window_patients": 5,
    "min_window_patient_days": 30,
    "min_feature_patients": 3,
    "min_slice_patients": 3,
    "min_values_per_feature": 10,
    "min_outcomes": 10,
    "render_html": False,
}


@pytest.fixture(scope="session")
def drift_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """training's tiny trained model: model.onnx + manifest + reference.npz (500 rows)."""
    from training.fixtures import build_tiny_artifact

    return build_tiny_artifact(tmp_path_factory.mktemp("drift-artifact"))


@dataclass
class Seeded:
    client: TestClient
    app: Any
    settings: Any
    cohort: Any
    patient_ids: dict[int, str]  # simulator key -> Patient id
    organisation_of: dict[int, str]
    loaded_from: datetime
    loaded_until: datetime

    def headers(
        self, role: str, organisation: str = ORG, subject: str | None = None
    ) -> dict[str, str]:
        from service.security.principal import Role
        from service.security.tokens import issue_dev_token

        token = issue_dev_token(self.settings, Role(role), organisation, None, subject)
        return {"Authorization": f"Bearer {token}"}

    def window(self) -> dict[str, str]:
        """A window of clinical time around everything this module stored."""
        return {
            "window_start": (self.cohort.start - timedelta(minutes=1)).isoformat(),
            "window_end": (self.loaded_until + timedelta(minutes=1)).isoformat(),
        }


def _pounds_from_day(cohort: Any, keys: set[int], day: int) -> Any:
    r = cohort.readings
    value = r.value.copy()
    faulty = (
        np.isin(r.patient, list(keys))
        & (r.channel == "weight")
        & (r.time_s >= cohort.start_s + day * 86_400)
    )
    value[faulty] *= POUNDS_PER_KG
    return replace(cohort, readings=replace(r, value=value))


def seed_cohort(
    client: TestClient,
    settings: Any,
    *,
    n_patients: int = N_PATIENTS,
    days: int = DAYS,
    seed: int = SEED,
) -> tuple[Any, dict[int, str], dict[int, str]]:
    """Enrol and ingest a simulated cohort through the API (FHIR batch Bundles of 25)."""
    from service.security.principal import Role
    from service.security.tokens import issue_dev_token
    from training.simulator import cohort_to_fhir, fhir_bundles, simulate_cohort

    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=days
    )
    cohort = simulate_cohort(
        n_patients, days, seed, pathways=("heart-failure", "copd"), start=start
    )
    # Pairs of patients (one per pathway) alternate between the organisations.
    organisation_of = {k: (ORG if (k // 2) % 2 == 0 else OTHER_ORG) for k in range(n_patients)}
    cohort = _pounds_from_day(cohort, {k for k, o in organisation_of.items() if o == OTHER_ORG}, 4)
    tokens = {
        org: {"Authorization": "Bearer " + issue_dev_token(settings, Role.INTEGRATION, org)}
        for org in (ORG, OTHER_ORG)
    }
    ids: dict[int, str] = {}
    for key, p in enumerate(cohort.patients):
        org = organisation_of[key]
        body = {
            "identifier": p.identifier,
            "birth_date": p.birth_date.isoformat(),
            "sex": p.sex,
            "pathway": p.pathway,
            "organisation": org,
            "unit": "home",
        }
        r = client.post("/api/v1/patients", json=body, headers=tokens[org])
        assert r.status_code == 201, r.text
        ids[key] = r.json()["id"]
    key_of = {p.identifier: k for k, p in enumerate(cohort.patients)}
    now_s = datetime.now(UTC).timestamp()
    by_org: dict[str, list[dict[str, Any]]] = {ORG: [], OTHER_ORG: []}
    for resource in cohort_to_fhir(
        cohort,
        lambda p: {
            "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": p.identifier}
        },
    ):
        when = resource.get("effectiveDateTime") or resource.get("authored")
        if when and datetime.fromisoformat(when).timestamp() > now_s:
            continue
        key = key_of[resource["subject"]["identifier"]["value"]]
        by_org[organisation_of[key]].append(resource)
    for org, resources in by_org.items():
        for bundle in fhir_bundles(resources, 25):
            r = client.post(
                "/fhir",
                content=json.dumps(bundle),
                headers={**tokens[org], "Content-Type": "application/fhir+json"},
            )
            assert r.status_code == 200, r.text
    return cohort, ids, organisation_of


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory, drift_artifact: Path) -> Iterator[Seeded]:
    """One seeded service for every test here (ingestion is the slow part); tests use their own
    windows, so their reports and sign-offs do not meet."""
    from service.app import create_app
    from service.config import Settings
    from tests.helpers import migrate_test_database as migrate

    folder = tmp_path_factory.mktemp("drift-service")
    # The schedule interval matters to the due check only: create_app starts no jobs by itself.
    settings = Settings(
        var_dir=folder / "var",
        model_dir=drift_artifact,
        environment="test",
        database_url=f"sqlite:///{folder / 'triage.db'}",
        drift_schedule_hours=24,
        rescore_schedule_hours=0,
    )
    migrate(settings.resolved_database_url)
    app = create_app(settings)
    client = TestClient(app)
    with pytest.MonkeyPatch.context() as mp:  # read once at startup; must not leak to others
        mp.setenv("TRIAGE_DRIFT_CONFIG", json.dumps(SMALL_WINDOWS))
        client.__enter__()
    try:
        loaded_from = datetime.now(UTC)
        cohort, ids, organisation_of = seed_cohort(client, settings)
        yield Seeded(
            client, app, settings, cohort, ids, organisation_of, loaded_from, datetime.now(UTC)
        )
    finally:
        client.__exit__(None, None, None)
