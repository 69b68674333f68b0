"""Issue 15's targets, through the service's own path: readings in the store -> patient-day
window (clinical time) -> report job in its own process -> index row, via POST
/api/v1/monitoring/drift-reports.

Cohorts come from training's simulator, enrolled over 90 days (a steady state, as a running
service sees). Each cohort is its own organisation and period in one store, so reports scoped to
it see only its patients. The readings are written to the store in bulk (the FHIR path is
tested elsewhere; through it, 200 patients x 180 days would take many minutes), and the
hospital's deteriorations are recorded as outcomes, as a site reports them.

Measured figures are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.features import CHANNEL_INDEX

pytestmark = pytest.mark.slow

REPORTS = "/api/v1/monitoring/drift-reports"
FIRST_START = datetime(2024, 1, 1, tzinfo=UTC)
COHORT_SPACING_DAYS = 200  # cohorts never share a day of clinical time
UNCHANGED_SMALL = list(range(10))  # 10 cohorts of 40 patients, one window each
UNCHANGED_LARGE = list(range(5))  # 5 cohorts of 200 patients, two windows each
SPO2_SEEDS = [0, 1, 2]


@dataclass
class Store:
    client: TestClient
    settings: Any
    next_slot: int = 0

    def headers(self, organisation: str, role: str = "ml-engineer") -> dict[str, str]:
        from service.security.principal import Role
        from service.security.tokens import issue_dev_token

        token = issue_dev_token(self.settings, Role(role), organisation, None)
        return {"Authorization": "Bearer " + token}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    from models.artifact import SHIPPED_ARTIFACT_DIR
    from service.app import create_app
    from service.config import Settings
    from tests.helpers import migrate_test_database as migrate

    folder: Path = tmp_path_factory.mktemp("drift-targets")
    settings = Settings(
        var_dir=folder / "var",
        model_dir=SHIPPED_ARTIFACT_DIR,
        environment="test",
        database_url=f"sqlite:///{folder / 'triage.db'}",
        drift_schedule_hours=0,
        rescore_schedule_hours=0,
    )
    migrate(settings.resolved_database_url)
    client = TestClient(create_app(settings))
    with pytest.MonkeyPatch.context() as mp:  # the default config, without HTML (its time)
        mp.setenv("TRIAGE_DRIFT_CONFIG", json.dumps({"render_html": False}))
        client.__enter__()
    try:
        yield Store(client, settings)
    finally:
        client.__exit__(None, None, None)


def store_cohort(store: Store, n_patients: int, seed: int, scenario: str, fault_day: int) -> Any:
    """Simulate a cohort and write its patients, readings and deteriorations to the store."""
    from service.db.engine import transaction
    from service.db.tables import IngestedResource, Outcome, Patient, Reading
    from training.drift_scenarios import simulate

    slot, store.next_slot = store.next_slot, store.next_slot + 1
    start = FIRST_START + timedelta(days=COHORT_SPACING_DAYS * slot)
    cohort = simulate(n_patients, seed, scenario, fault_from_day=fault_day, start=start)
    organisation = f"9{slot:08d}"
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in cohort.patients]
    history = cohort.history()
    names = {i: c for c, i in CHANNEL_INDEX.items()}
    with transaction(store.client.app.state.sessions) as session:
        session.add_all(
            Patient(
                id=pid,
                identifier_system="urn:oid:2.16.578.1.12.4.1.4.1",
                identifier_value=f"{slot:02d}{k:09d}",  # unique, not a valid fødselsnummer
                birth_date=p.birth_date,
                sex=p.sex,
                pathway_id=p.pathway,
                organisation=organisation,
                unit="home",
                created_at=now,
                created_by="bulk",
            )
            for k, (pid, p) in enumerate(zip(ids, cohort.patients, strict=True))
        )
        session.flush()
        # One stored message per patient and time, as the device sent it.
        message = {
            key: str(uuid.uuid4())
            for key in {
                (int(p), int(t)) for p, t in zip(history.patient, history.time_s, strict=True)
            }
        }
        session.execute(
            IngestedResource.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "id": rid,
                    "resource_type": "Observation",
                    "idempotency_key": f"bulk-{rid}",
                    "content_hash": "0" * 64,
                    "patient_id": ids[p],
                    "body": {},
                    "received_at": now,
                    "received_by": "bulk",
                }
                for (p, _), rid in message.items()
            ],
        )
        session.execute(
            Reading.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "patient_id": ids[int(p)],
                    "resource_id": message[(int(p), int(t))],
                    "name": names[int(c)],
                    "value": float(v),
                    "effective_s": int(t),
                }
                for p, c, t, v in zip(
                    history.patient, history.channel, history.time_s, history.value, strict=True
                )
            ],
        )
        session.add_all(
            Outcome(
                id=str(uuid.uuid4()),
                patient_id=ids[k],
                occurred_at=datetime.fromtimestamp(int(onset), UTC),
                deteriorated=True,
                organisation=organisation,
                source="dips-admission",
                recorded_by="bulk",
                recorded_at=now,
            )
            for k, onsets in enumerate(cohort.event_onset_s)
            for onset in onsets
        )
    cohort.organisation = organisation
    return cohort


def run(store: Store, cohort: Any, from_day: int, days: int, **extra: Any) -> dict[str, Any]:
    start = cohort.start + timedelta(days=from_day)
    body = {
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(days=days)).isoformat(),
        "organisation": cohort.organisation,
        **extra,
    }
    r = store.client.post(REPORTS, json=body, headers=store.headers(cohort.organisation))
    assert r.status_code == 201, r.text
    detail = store.client.get(
        f"{REPORTS}/{r.json()['id']}", headers=store.headers(cohort.organisation, "compliance")
    )
    assert detail.status_code == 200, detail.text
    return dict(detail.json())


def _line(tag: str, report: dict[str, Any]) -> str:
    return (
        f"{tag}: {report['verdict']} ({report['n_patients']} patients, {report['n_current']} "
        f"patient-days) {report['drifted_features']}"
    )


def test_unchanged_windows_are_quiet_at_40_and_200_patients(store: Store) -> None:
    """At least 20 unchanged windows, cohorts of 40 and 200 patients: at most one not ok."""
    from training.drift_scenarios import STEADY_FROM_DAY

    reports = []
    for seed in UNCHANGED_SMALL:
        cohort = store_cohort(store, 40, 300 + seed, "unchanged", 0)
        reports.append(("40", run(store, cohort, STEADY_FROM_DAY, 14)))
    for seed in UNCHANGED_LARGE:
        cohort = store_cohort(store, 200, 400 + seed, "unchanged", 0)
        reports.append(("200", run(store, cohort, STEADY_FROM_DAY, 14)))
        reports.append(("200", run(store, cohort, STEADY_FROM_DAY + 14, 14)))
    for tag, report in reports:
        print(_line(f"unchanged {tag}", report))
    assert len(reports) >= 20
    assert all(r["n_patients"] >= 30 for _, r in reports)
    not_ok = [r for _, r in reports if r["verdict"] != "ok"]
    print(f"unchanged windows: {len(reports)}, not ok: {len(not_ok)}")
    assert len(not_ok) <= 1, [_line("not ok", r) for r in not_ok]


def test_spo2_three_points_low_on_one_device_type_is_drift_naming_spo2(store: Store) -> None:
    from training.drift_scenarios import STEADY_FROM_DAY

    for seed in SPO2_SEEDS:
        cohort = store_cohort(store, 200, 500 + seed, "device-spo2", 0)
        report = run(store, cohort, STEADY_FROM_DAY, 14)
        print(_line(f"spo2 seed {seed}", report))
        assert report["verdict"] == "drift", report["drifted_features"]
        assert "spo2_pct_latest" in report["drifted_features"]
        assert report["likely_kind"] == "device-or-unit"
        summary = report["report"]["summary"]
        assert "SpO2" in " ".join(summary["en"]["changes"])
        assert "SpO2" in " ".join(summary["nb"]["changes"])
        assert "lower" in summary["en"]["changes"][0]


@pytest.mark.parametrize("scenario", ["device-spo2", "device-weight"])
def test_device_fault_halfway_is_flagged_against_the_sites_own_first_half(
    store: Store, scenario: str
) -> None:
    from training.drift_scenarios import STEADY_FROM_DAY

    halfway = STEADY_FROM_DAY + 14
    cohort = store_cohort(store, 200, 600, scenario, halfway)
    baseline_start = cohort.start + timedelta(days=STEADY_FROM_DAY)
    report = run(
        store,
        cohort,
        halfway,
        14,
        reference={
            "window_start": baseline_start.isoformat(),
            "window_end": (baseline_start + timedelta(days=14)).isoformat(),
        },
    )
    print(_line(f"{scenario} halfway", report))
    assert report["reference_kind"] == "local-baseline"
    assert report["verdict"] == "drift"
    assert report["likely_kind"] == "device-or-unit"
    text = report["report"]["summary"]["en"]
    assert "device or unit" in text["likely_kind"] and "population" not in text["likely_kind"]
    assert "site's own baseline" in text["headline"]
    halfway_day = (cohort.start + timedelta(days=halfway)).strftime("%Y-%m-%d")
    assert any(halfway_day in line for line in text["changes"]), text["changes"]
    # The same window against the model's training sample is a separate report.
    assert run(store, cohort, halfway, 14)["id"] != report["id"]


def test_replaying_a_period_gives_that_periods_report(store: Store) -> None:
    """Clinical time: the report of a past period is the same whenever it is asked for."""
    from training.drift_scenarios import STEADY_FROM_DAY

    cohort = store_cohort(store, 40, 700, "unchanged", 0)
    first = run(store, cohort, STEADY_FROM_DAY, 14)
    start = cohort.start + timedelta(days=STEADY_FROM_DAY)
    again = store.client.post(
        REPORTS,
        json={
            "window_start": start.isoformat(),
            "window_end": (start + timedelta(days=14)).isoformat(),
            "organisation": cohort.organisation,
        },
        headers=store.headers(cohort.organisation),
    )
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert first["window_start"].startswith(start.strftime("%Y-%m-%d"))
    assert first["n_current"] > 0 and np.isfinite(first["report"]["window"]["patient_days"])
    assert int(first["report"]["window"]["patient_days"]) == first["n_current"]
