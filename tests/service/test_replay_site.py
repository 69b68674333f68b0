"""A cohort from a site profile the shipped model never saw, replayed through the API as a new
hospital would send it (enrolment, then FHIR batch Bundles in time order): the shipped model's
operating points, not only the rules, put patients on red, and the worklist says which.

Synthetic data throughout: this checks the wiring of model-driven triage end to end, not the
model's clinical performance (that is the leave-one-profile-out table in training/README.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.artifact import SHIPPED_ARTIFACT_DIR
from tests.helpers import ORG
from training.simulator import cohort_to_fhir, fhir_bundles
from training.sites import SITE_PROFILES, simulate_site

pytestmark = pytest.mark.slow

# A profile left out of the shipped model's training (it is trained on the default profile only).
UNSEEN_SITE = next(site for site in SITE_PROFILES if site.name == "other-device")


@pytest.fixture
def settings(make_settings: Callable[..., Any], database_url: str, tmp_path: Path) -> Any:
    return make_settings(database_url=database_url, model_dir=SHIPPED_ARTIFACT_DIR)


def test_reds_from_the_shipped_model_on_an_unseen_site_and_the_worklist_says_so(
    client: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    cohort, _, _, _ = simulate_site(UNSEEN_SITE, n_patients=30, days=21, seed=11)
    integration = auth("integration")
    ids: dict[str, str] = {}
    for patient in cohort.patients:
        body = {
            "identifier": patient.identifier,
            "birth_date": patient.birth_date.isoformat(),
            "sex": patient.sex,
            "pathway": patient.pathway,
            "organisation": ORG,
            "unit": "hjemmeoppfolging",
        }
        enrolled = client.post("/api/v1/patients", json=body, headers=auth("clinician"))
        assert enrolled.status_code == 201, enrolled.text
        ids[patient.identifier] = enrolled.json()["id"]

    refused = 0
    resources = cohort_to_fhir(cohort, lambda p: {"reference": f"Patient/{ids[p.identifier]}"})
    for bundle in fhir_bundles(resources, batch_size=200):
        answer = client.post(
            "/fhir", json=bundle, headers={**integration, "Content-Type": "application/fhir+json"}
        )
        assert answer.status_code == 200, answer.text[:300]
        statuses = [e["response"]["status"] for e in answer.json()["entry"]]
        refused += sum(not s.startswith(("200", "201")) for s in statuses)
    assert refused == 0

    items = client.get("/api/v1/worklist", params={"limit": 500}, headers=auth("clinician")).json()
    sources = Counter((item["level"], item["level_source"]) for item in items)
    model_reds = [
        item
        for item in items
        if item["level"] == "red" and item["level_source"] in {"model", "rule+model"}
    ]
    assert model_reds, f"no red came from the model: {dict(sources)}"
    # Rules stay the hard limits beside the model: the policy names its source on every item.
    assert {item["level_source"] for item in items} <= {"rule", "model", "rule+model", "none"}
    # A held red or yellow names the source of the level it holds, never "none" (it did, before
    # the held level kept its own source).
    assert not [i for i in items if i["level"] != "green" and i["level_source"] == "none"]
    for item in model_reds:
        pid = item["patient"]["id"]
        assessed = client.get(
            f"/api/v1/patients/{pid}/assessments", headers=auth("clinician")
        ).json()
        assert any(
            a["level"] == "red" and a["level_source"] in {"model", "rule+model"} for a in assessed
        ), "the worklist's model red has no model-decided red assessment behind it"
