"""Drift reports through the API on a cohort fed through real ingestion: run, idempotency, HTML,
sign-off (immutable, audited, compliance only), alerts and metrics, outcomes -> performance."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.helpers import ORG
from tests.service.monitoring.conftest import OTHER_ORG, Seeded

REPORTS = "/api/v1/monitoring/drift-reports"


def _window(seeded: Seeded, shift_s: int) -> dict[str, str]:
    """A window of clinical time around the seeded cohort's readings (when they were measured,
    not when they were sent); a different ``shift_s`` is a different report key."""
    start = seeded.cohort.start - timedelta(minutes=5, seconds=shift_s)
    end = seeded.loaded_until + timedelta(minutes=5)
    return {"window_start": start.isoformat(), "window_end": end.isoformat()}


def _run(seeded: Seeded, shift_s: int, role: str = "ml-engineer", **scope: str) -> Any:
    # An organisation's report is run by that organisation (service.security.visibility).
    headers = seeded.headers(role, scope.get("organisation", ORG))
    return seeded.client.post(REPORTS, json={**_window(seeded, shift_s), **scope}, headers=headers)


def _audit_rows(seeded: Seeded, resource_part: str) -> list[Any]:
    from service.db.tables import AuditEntry

    assert seeded.app.state.audit.flush(10)
    with seeded.app.state.sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.resource.contains(resource_part))
                .order_by(AuditEntry.seq)
            )
        )


def test_report_is_stored_with_index_row_and_files_and_is_idempotent(seeded: Seeded) -> None:
    first = _run(seeded, 1)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["verdict"] in ("ok", "warning", "drift")
    assert body["model_version"] == "tiny-0"
    assert body["n_current"] >= 30 and body["n_reference"] == 500
    assert body["sign_off"] is None
    folder = Path(seeded.settings.reports_dir) / "drift"
    assert (folder / f"{body['report_key']}.json").is_file()

    again = _run(seeded, 1, role="compliance")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == body["id"] and again.json()["report_key"] == body["report_key"]

    listed = seeded.client.get(REPORTS, headers=seeded.headers("compliance")).json()
    assert [r["id"] for r in listed].count(body["id"]) == 1
    detail = seeded.client.get(f"{REPORTS}/{body['id']}", headers=seeded.headers("admin"))
    assert detail.status_code == 200
    report = detail.json()["report"]
    assert report["report_key"] == body["report_key"]
    assert report["verdict"] == body["verdict"]
    assert report["drifted_features"] == body["drifted_features"]
    # One row per patient-day of the window, every seeded patient in it (clinical time).
    from service.domain.monitoring import build_window_frame

    window = _window(seeded, 1)
    with seeded.app.state.sessions() as session:
        frame = build_window_frame(
            session,
            datetime.fromisoformat(window["window_start"]),
            datetime.fromisoformat(window["window_end"]),
            seeded.app.state.models.current().model,
        )
    assert report["n_current"] == len(frame) and body["n_patients"] == len(seeded.patient_ids)
    assert report["window"]["patients"] == len(seeded.patient_ids)
    assert report["reference"]["kind"] == "training-sample"
    assert set(report["summary"]) == {"en", "nb", "nn"}


def test_html_report_is_served_small_and_without_identifiers(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = seeded.app.state.services.monitoring
    without_html = _run(seeded, 2).json()
    missing = seeded.client.get(
        f"{REPORTS}/{without_html['id']}/html", headers=seeded.headers("compliance")
    )
    assert missing.status_code == 404 and "no HTML" in missing.json()["detail"]
    monkeypatch.setattr(service, "config", service.config.model_copy(update={"render_html": True}))
    report = _run(seeded, 9).json()
    report_id = report["id"]
    assert (Path(seeded.settings.reports_dir) / "drift" / f"{report['report_key']}.html").is_file()
    html = seeded.client.get(f"{REPORTS}/{report_id}/html", headers=seeded.headers("compliance"))
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "Technical appendix" in html.text and "/api/v1/monitoring/evidently.js" in html.text
    # Evidently's library is served apart, so one report stays small (issue 7: bounded HTML).
    assert len(html.content) < 1_500_000
    detail = seeded.client.get(f"{REPORTS}/{report_id}", headers=seeded.headers("compliance"))
    for p in seeded.cohort.patients:  # aggregates only: no fødselsnummer anywhere
        assert p.identifier not in html.text and p.identifier not in detail.text
    library = seeded.client.get("/api/v1/monitoring/evidently.js")
    assert library.status_code == 200 and len(library.content) > 100_000


def test_too_few_rows_is_a_clear_422(seeded: Seeded) -> None:
    early = seeded.loaded_from - timedelta(days=30)
    response = seeded.client.post(
        REPORTS,
        json={
            "window_start": early.isoformat(),
            "window_end": (early + timedelta(days=7)).isoformat(),
        },
        headers=seeded.headers("ml-engineer"),
    )
    assert response.status_code == 422
    assert "no patient-days" in response.json()["detail"]
    # One patient's days: too few patients for a verdict, and the message says what is needed.
    one = seeded.client.post(
        REPORTS,
        json={**_window(seeded, 11), "organisation": seeded.organisation_of[0], "pathway": "copd"},
        headers=seeded.headers("ml-engineer"),
    )
    assert one.status_code == 422, one.text
    assert "at least 5 patients" in one.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"window_start": "2026-11-01T00:00:00", "window_end": "2026-11-08T00:00:00+00:00"},
        {"window_start": "2026-11-08T00:00:00Z", "window_end": "2026-11-01T00:00:00Z"},
        {"window_start": "1900-01-01T00:00:00Z", "window_end": "2026-11-01T00:00:00Z"},
        {"window_start": "2020-01-01T00:00:00Z", "window_end": "2026-11-01T00:00:00Z"},
        {
            "window_start": "2026-11-01T00:00:00Z",
            "window_end": "2026-11-08T00:00:00Z",
            "pathway": "COPD; drop",
        },
        {"window_start": "2026-11-01T00:00:00Z", "window_end": "2026-11-08T00:00:00Z", "extra": 1},
    ],
)
def test_invalid_windows_are_422(seeded: Seeded, body: dict[str, Any]) -> None:
    response = seeded.client.post(REPORTS, json=body, headers=seeded.headers("compliance"))
    assert response.status_code == 422, response.text


def test_sign_off_is_once_audited_and_compliance_only(seeded: Seeded) -> None:
    report_id = _run(seeded, 3).json()["id"]
    url = f"{REPORTS}/{report_id}/sign-off"
    body = {"decision": "escalated", "comment": "Weight values jump at one trust; vendor asked."}
    for role in ("ml-engineer", "clinician", "admin", "integration"):
        assert seeded.client.post(url, json=body, headers=seeded.headers(role)).status_code == 403

    signed = seeded.client.post(
        url, json=body, headers=seeded.headers("compliance", subject="HPR-7654321")
    )
    assert signed.status_code == 201, signed.text
    assert signed.json()["decision"] == "escalated"
    assert signed.json()["signed_by"] == "HPR-7654321"
    assert signed.json()["role"] == "compliance"

    second = seeded.client.post(
        url,
        json={"decision": "accepted", "comment": "On second thought"},
        headers=seeded.headers("compliance", subject="HPR-1"),
    )
    assert second.status_code == 409
    assert "already signed off" in second.json()["detail"]

    listed = seeded.client.get(
        REPORTS, params={"signed_off": "true"}, headers=seeded.headers("compliance")
    ).json()
    mine = next(r for r in listed if r["id"] == report_id)
    assert mine["sign_off"]["decision"] == "escalated"
    assert mine["sign_off"]["comment"] == body["comment"]
    awaiting = seeded.client.get(
        REPORTS, params={"signed_off": "false"}, headers=seeded.headers("compliance")
    ).json()
    assert report_id not in {r["id"] for r in awaiting}

    rows = _audit_rows(seeded, "/sign-off")
    outcomes = [(r.actor, r.role, r.action, r.outcome) for r in rows]
    assert ("HPR-7654321", "compliance", "write", 201) in outcomes
    assert ("HPR-1", "compliance", "write", 409) in outcomes
    assert ("dev-ml-engineer", "ml-engineer", "refuse", 403) in outcomes


def test_sign_off_record_cannot_be_edited(seeded: Seeded) -> None:
    from service.db.engine import transaction
    from service.db.tables import DriftSignOff
    from service.security.record_guards import RecordImmutable

    report_id = _run(seeded, 4).json()["id"]
    seeded.client.post(
        f"{REPORTS}/{report_id}/sign-off",
        json={"decision": "accepted", "comment": "Explained by the test cohort."},
        headers=seeded.headers("compliance"),
    )
    with pytest.raises(RecordImmutable), transaction(seeded.app.state.sessions) as session:
        row = session.scalar(select(DriftSignOff).where(DriftSignOff.report_id == report_id))
        assert row is not None
        row.decision = "escalated"


def test_sign_off_input_is_checked(seeded: Seeded) -> None:
    report_id = _run(seeded, 5).json()["id"]
    url = f"{REPORTS}/{report_id}/sign-off"
    compliance = seeded.headers("compliance")
    for body in (
        {"decision": "maybe", "comment": "xyz"},
        {"decision": "accepted", "comment": ""},
        {"decision": "accepted"},
        {"decision": "accepted", "comment": "patient 15076500565 looked odd"},
    ):
        assert seeded.client.post(url, json=body, headers=compliance).status_code == 422, body
    missing = seeded.client.post(
        f"{REPORTS}/no-such-report/sign-off",
        json={"decision": "accepted", "comment": "fine"},
        headers=compliance,
    )
    assert missing.status_code == 404


def test_roles_for_running_and_reading(seeded: Seeded) -> None:
    window = _window(seeded, 1)
    for role in ("clinician", "admin", "integration"):
        refused = seeded.client.post(REPORTS, json=window, headers=seeded.headers(role))
        assert refused.status_code == 403, role
    assert seeded.client.get(REPORTS, headers=seeded.headers("clinician")).status_code == 403
    assert seeded.client.get(REPORTS).status_code == 401
    for role in ("ml-engineer", "compliance", "admin"):
        assert seeded.client.get(REPORTS, headers=seeded.headers(role)).status_code == 200
        assert (
            seeded.client.get("/api/v1/monitoring/alerts", headers=seeded.headers(role)).status_code
            == 200
        )
    for path in (f"{REPORTS}/unknown", f"{REPORTS}/unknown/html"):
        assert seeded.client.get(path, headers=seeded.headers("compliance")).status_code == 404


def test_data_quality_is_flagged_apart_from_drift(
    seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    """The second organisation's scale sends pounds as kilograms from day 4: a device fault."""
    with caplog.at_level(logging.WARNING, logger="triage.monitoring"):
        faulty = _run(seeded, 6, organisation=OTHER_ORG)
        clean = _run(seeded, 6, organisation=ORG)
    assert faulty.status_code == 201 and clean.status_code == 201
    weight_flags = {
        f["column"]
        for f in faulty.json()["data_quality"]
        if f["kind"] == "out_of_range" and f["column"].startswith("weight")
    }
    assert weight_flags & {"weight", "weight_kg_delta_baseline", "weight_kg_change_1d"}
    assert not [
        f
        for f in clean.json()["data_quality"]
        if f["kind"] == "out_of_range" and f["column"].startswith("weight")
    ]

    alerts = seeded.client.get(
        "/api/v1/monitoring/alerts",
        params={"kind": "data_quality"},
        headers=seeded.headers("ml-engineer", OTHER_ORG),
    ).json()
    mine = [a for a in alerts if a["report_id"] == faulty.json()["id"]]
    assert mine and all(a["kind"] == "data_quality" for a in mine)
    assert any(set(a["features"]) & weight_flags and "out of range" in a["text_en"] for a in mine)
    # The statistical-drift alert of the same report, if any, is a separate entry.
    everything = seeded.client.get(
        "/api/v1/monitoring/alerts", headers=seeded.headers("compliance", OTHER_ORG)
    ).json()
    kinds = {a["kind"] for a in everything if a["report_id"] == faulty.json()["id"]}
    assert "data_quality" in kinds
    if faulty.json()["drifted_features"]:
        assert "drift" in kinds

    logged = [r.getMessage() for r in caplog.records if "drift_alert" in r.getMessage()]
    assert any('kind="data_quality"' in line and OTHER_ORG in line for line in logged)
    for p in seeded.cohort.patients:
        assert not any(p.identifier in line for line in logged)

    metrics = seeded.client.get("/metrics").text
    assert 'triage_drift_alert{kind="data-quality",pathway="all"} 1.0' in metrics
    assert "triage_drift_verdict{" in metrics


def test_drift_alert_and_gauge(seeded: Seeded) -> None:
    """A cohort of 12 patients does not look like the 500-row training sample: drift."""
    body = _run(seeded, 7).json()
    assert body["verdict"] == "drift"
    alerts = seeded.client.get(
        "/api/v1/monitoring/alerts", params={"kind": "drift"}, headers=seeded.headers("compliance")
    ).json()
    entry = next(a for a in alerts if a["report_id"] == body["id"])
    assert entry["severity"] == "critical" and entry["features"] == body["drifted_features"]
    assert entry["signed_off"] is False
    metrics = seeded.client.get("/metrics").text
    assert 'triage_drift_alert{kind="drift",pathway="all"} 1.0' in metrics


def test_outcomes_are_recorded_and_feed_performance(seeded: Seeded) -> None:
    """Deteriorations from the simulator, and a follow-up for everyone, recorded by clinicians."""

    clinician = {
        ORG: seeded.headers("clinician", ORG),
        OTHER_ORG: seeded.headers("clinician", OTHER_ORG),
    }
    followed_up = datetime.now(UTC)
    onsets: dict[str, list[float]] = {}
    for key, pid in seeded.patient_ids.items():
        org = seeded.organisation_of[key]
        for onset in seeded.cohort.event_onset_s[key]:
            if onset > followed_up.timestamp():
                continue
            onsets.setdefault(pid, []).append(float(onset))
            r = seeded.client.post(
                "/api/v1/outcomes",
                headers=clinician[org],
                json={
                    "patient_id": pid,
                    "deteriorated": True,
                    "source": "dips-admission",
                    "occurred_at": datetime.fromtimestamp(float(onset), UTC).isoformat(),
                },
            )
            assert r.status_code == 201, r.text
            assert r.json()["recorded_by"] == "dev-clinician"
        r = seeded.client.post(
            "/api/v1/outcomes",
            headers=clinician[org],
            json={
                "patient_id": pid,
                "deteriorated": False,
                "source": "follow-up-call",
                "occurred_at": followed_up.isoformat(),
            },
        )
        assert r.status_code == 201, r.text
    assert onsets, "the seed must give at least one deterioration"
    # Another organisation's clinician cannot see (or record for) the patient.
    pid = seeded.patient_ids[0]
    other = OTHER_ORG if seeded.organisation_of[0] == ORG else ORG
    refused = seeded.client.post(
        "/api/v1/outcomes",
        headers=clinician[other],
        json={
            "patient_id": pid,
            "deteriorated": True,
            "source": "x",
            "occurred_at": followed_up.isoformat(),
        },
    )
    assert refused.status_code == 404
    future = seeded.client.post(
        "/api/v1/outcomes",
        headers=clinician[seeded.organisation_of[0]],
        json={
            "patient_id": pid,
            "deteriorated": True,
            "source": "x",
            "occurred_at": (followed_up + timedelta(days=2)).isoformat(),
        },
    )
    assert future.status_code == 422 and "future" in future.json()["detail"]
    assert (
        seeded.client.post(
            "/api/v1/outcomes",
            headers=seeded.headers("compliance"),
            json={
                "patient_id": pid,
                "deteriorated": True,
                "source": "x",
                "occurred_at": followed_up.isoformat(),
            },
        ).status_code
        == 403
    )
    assert _audit_rows(seeded, "/api/v1/outcomes")

    # Expected labels, counted the plain way: 1 = deterioration within 72 h after the row's
    # clinical time, for every patient-day row of the window.
    from service.domain.monitoring import build_window_frame

    horizon = 72 * 3600
    window = _window(seeded, 8)
    with seeded.app.state.sessions() as session:
        frame = build_window_frame(
            session,
            datetime.fromisoformat(window["window_start"]),
            datetime.fromisoformat(window["window_end"]),
            seeded.app.state.models.current().model,
        )
    positives = known = 0
    for patient_id, t in zip(frame.patient, frame.scored_at, strict=True):
        if any(t <= o <= t + horizon for o in onsets.get(patient_id, [])):
            positives, known = positives + 1, known + 1
        elif followed_up.timestamp() > t + horizon:
            known += 1

    body = _run(seeded, 8).json()
    report = seeded.client.get(
        f"{REPORTS}/{body['id']}", headers=seeded.headers("compliance")
    ).json()["report"]
    if positives == 0:
        pytest.fail("no assessment falls within 72 h before a recorded deterioration")
    performance = report["performance"]
    assert performance is not None, "performance needs known outcomes of both classes"
    assert performance["n_outcomes"] == known
    assert performance["n_positive"] == positives
    assert "synthetic" in performance["note"]
    assert body["performance"]["n_outcomes"] == known


def test_report_without_reference_is_409(client: Any, auth: Any) -> None:
    """The hand-made test model ships no reference.npz: drift cannot be computed against it."""
    response = client.post(
        REPORTS,
        json={"window_start": "2026-11-01T00:00:00Z", "window_end": "2026-11-08T00:00:00Z"},
        headers=auth("ml-engineer"),
    )
    assert response.status_code == 409
    assert "reference" in response.json()["detail"]


def test_report_json_on_disk_is_strict(seeded: Seeded) -> None:
    body = _run(seeded, 1).json()
    path = Path(seeded.settings.reports_dir) / "drift" / f"{body['report_key']}.json"
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text
    assert json.loads(text)["report_key"] == body["report_key"]


def test_concurrent_runs_of_one_window_store_one_report(seeded: Seeded) -> None:
    """Two callers at once (two tabs, or the schedule and a person): one row, both see it."""
    from concurrent.futures import ThreadPoolExecutor

    from service.db.tables import DriftReport

    with ThreadPoolExecutor(2) as pool:
        responses = list(
            pool.map(lambda role: _run(seeded, 10, role=role), ["ml-engineer", "compliance"])
        )
    assert sorted(r.status_code for r in responses) == [200, 201]
    assert responses[0].json()["id"] == responses[1].json()["id"]
    with seeded.app.state.sessions() as session:
        rows = session.scalars(
            select(DriftReport.id).where(
                DriftReport.report_key == responses[0].json()["report_key"]
            )
        ).all()
    assert len(rows) == 1


def test_drift_reports_are_scoped_by_organisation(seeded: Seeded) -> None:
    """Issue 12 finding 4: B neither runs, reads nor signs A's report; A still signs it."""
    a, b = ORG, OTHER_ORG
    window = _window(seeded, 11)
    refused = seeded.client.post(
        REPORTS, json={**window, "organisation": a}, headers=seeded.headers("ml-engineer", b)
    )
    assert refused.status_code == 403
    report = _run(seeded, 11, organisation=a)
    assert report.status_code == 201, report.text
    report_id = report.json()["id"]

    for role in ("ml-engineer", "compliance"):
        others = seeded.headers(role, b)
        listed = seeded.client.get(REPORTS, headers=others).json()
        assert report_id not in {r["id"] for r in listed}
        assert all(r["organisation"] in (None, b) for r in listed)
        assert seeded.client.get(f"{REPORTS}/{report_id}", headers=others).status_code == 404
        html = seeded.client.get(f"{REPORTS}/{report_id}/html", headers=others)
        assert html.status_code == 404
        alerts = seeded.client.get("/api/v1/monitoring/alerts", headers=others).json()
        assert report_id not in {x["report_id"] for x in alerts}

    body = {"decision": "accepted", "comment": "Reviewed by the trust's compliance office."}
    url = f"{REPORTS}/{report_id}/sign-off"
    assert (
        seeded.client.post(url, json=body, headers=seeded.headers("compliance", b)).status_code
        == 404
    )
    signed = seeded.client.post(url, json=body, headers=seeded.headers("compliance", a))
    assert signed.status_code == 201, signed.text
    own = seeded.client.get(f"{REPORTS}/{report_id}", headers=seeded.headers("compliance", a))
    assert own.status_code == 200 and own.json()["sign_off"]["decision"] == "accepted"
