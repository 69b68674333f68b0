"""A small seeded cohort for the page tests: enrolled through the API, measured through FHIR Bundles.

Works with a TestClient or an httpx.Client against a live server (both have .post/.get).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from tests.helpers import ORG, observation, questionnaire_response
from training.simulator import synthetic_fnr

UNIT = "lungs"


def _bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in entries
        ],
    }


def _enrol(
    client: Any,
    headers: dict[str, str],
    birth: date,
    seed: int,
    pathway: str = "copd",
    **extra: Any,
) -> str:
    ident = synthetic_fnr(birth, np.random.default_rng(seed))
    body = {
        "identifier": ident,
        "birth_date": birth.isoformat(),
        "sex": "female",
        "pathway": pathway,
        "organisation": ORG,
        "unit": UNIT,
        **extra,
    }
    response = client.post("/api/v1/patients", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def post_bundle(client: Any, integration: dict[str, str], entries: list[dict[str, Any]]) -> None:
    """POST a batch; retried on a 500 because SQLite can refuse a deferred read-then-write
    transaction while the audit writer commits ("database is locked", reported to the lead).
    Retrying is safe: ingestion is idempotent on each resource's identifier."""
    body = json.dumps(_bundle(entries))
    for attempt in range(6):
        response = client.post(
            "/fhir", content=body, headers={**integration, "Content-Type": "application/fhir+json"}
        )
        if response.status_code != 500:
            break
        time.sleep(0.05 * (attempt + 1))
    assert response.status_code == 200, response.text[:500]


def seed_cohort(
    client: Any, integration: dict[str, str], days: int = 30, end: datetime | None = None
) -> dict[str, str]:
    """Three COPD patients (falling SpO2 → red, mild fever → yellow, stable) and a 14-year-old
    on the paediatric pathway who keeps information from her parents. Returns name -> id."""
    end = (end or datetime.now(UTC)).replace(microsecond=0)
    today = end.date()
    ids = {
        "red": _enrol(client, integration, date(1948, 3, 1), 1),
        "yellow": _enrol(client, integration, date(1956, 6, 12), 2),
        "stable": _enrol(client, integration, date(1961, 9, 30), 3),
        "teen": _enrol(
            client,
            integration,
            date(today.year - 14, 2, 10),
            4,
            pathway="paediatric",
            confidential_to_guardians=True,
        ),
    }
    rng = np.random.default_rng(7)
    for name, pid in ids.items():
        for d in range(days, -1, -1):
            entries = []
            for hour in (8, 20):
                when = end - timedelta(days=d, hours=12 - hour + 2)
                late = d <= 2
                spo2 = 95 + rng.normal(0, 0.8)
                heart = 74 + rng.normal(0, 3)
                temp = 36.8 + rng.normal(0, 0.15)
                if name == "red" and late:
                    spo2, heart = 86 - (2 - d) + rng.normal(0, 0.3), 108 + rng.normal(0, 2)
                if name == "yellow" and late:
                    temp = 38.4 + rng.normal(0, 0.1)
                if name == "teen":
                    heart += 10
                key = f"{name}-{d}-{hour}"
                entries.append(observation(pid, "spo2", round(float(spo2), 1), when, f"{key}-s"))
                entries.append(
                    observation(pid, "heart_rate", round(float(heart)), when, f"{key}-h")
                )
                if hour == 8:
                    entries.append(
                        observation(pid, "temperature", round(float(temp), 1), when, f"{key}-t")
                    )
                    entries.append(
                        observation(
                            pid,
                            "respiratory_rate",
                            round(float(16 + rng.normal(0, 1))),
                            when,
                            f"{key}-r",
                        )
                    )
                    if name != "teen" and d % 3 == 0:
                        entries.append(questionnaire_response(pid, when, f"{key}-q"))
            post_bundle(client, integration, entries)
    return ids


def seed_questionnaire_tasks(database_url: str, now: datetime | None = None) -> None:
    """Questionnaires sent to the seeded patients (issue 18): the dispatch runs at the next
    08:30 in Oslo (a COPD morning window opens: sent) and a day later (that one is missed, the
    next is sent), so the patient page shows both states."""
    from zoneinfo import ZoneInfo

    from service.db.engine import make_engine, make_session_factory, transaction
    from service.domain.pathways import PathwayService
    from service.domain.questionnaire_tasks import QuestionnaireDispatch

    oslo = ZoneInfo("Europe/Oslo")
    local = (now or datetime.now(UTC)).astimezone(oslo)
    first = local.replace(hour=8, minute=30, second=0, microsecond=0)
    if first <= local:
        first += timedelta(days=1)
    engine = make_engine(database_url)
    try:
        sessions = make_session_factory(engine)
        dispatch = QuestionnaireDispatch(PathwayService(), deliver=False)
        for when in (first, first + timedelta(days=1)):
            with transaction(sessions) as session:
                dispatch.run(session, when.astimezone(UTC))
    finally:
        engine.dispose()
