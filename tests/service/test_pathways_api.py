"""Pathways as versioned data through the API: publish, validate, history, dry run, overrides."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import enrol, observation, post_fhir

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
NEWS2_NORMAL = {
    "respiratory_rate": 18,
    "spo2": 97,
    "on_oxygen": False,
    "systolic_bp": 120,
    "heart_rate": 80,
    "consciousness": "alert",
    "temperature": 37.0,
}


@pytest.fixture
def settings(make_settings, any_database_url):
    """These store tests run on SQLite and on PostgreSQL."""
    return make_settings(database_url=any_database_url)


def current(client, headers, pid="copd"):
    return client.get(f"/api/v1/pathways/{pid}", headers=headers).json()


def test_shipped_pathways_are_listed(client, auth):
    listed = client.get("/api/v1/pathways", headers=auth("clinician")).json()
    assert {p["id"] for p in listed} >= {
        "copd",
        "heart-failure",
        "post-operative",
        "oncology",
        "paediatric",
    }
    assert all(p["version"] >= 1 and p["hash"].startswith("sha256:") for p in listed)


def test_news2_dry_run(client, auth):
    body = {
        "rule_set": "news2",
        "values": {**NEWS2_NORMAL, "respiratory_rate": 25, "spo2": 95},
        "age_years": 70,
    }
    result = client.post("/api/v1/rules/evaluate", json=body, headers=auth("clinician")).json()
    assert result["scores"]["news2"] == 4  # RR ≥ 25: 3, SpO2 94–95: 1
    assert result["level"] != "green"  # a single parameter scoring 3 asks for urgent review
    assert any("NEWS2" in f["text_en"] for f in result["fired"])
    assert all(f["text"] == f["text_nb"] for f in result["fired"])
    english = client.post(
        "/api/v1/rules/evaluate?lang=en", json=body, headers=auth("clinician")
    ).json()
    assert all(f["text"] == f["text_en"] for f in english["fired"])


@pytest.mark.parametrize(
    "body, location",
    [
        ({"rule_set": "news2", "values": {"spo2": "low"}}, "values"),
        ({"rule_set": "no-such-set", "values": {"spo2": 90}}, "rule_set"),
        ({"rule_set": "news2", "pathway": "copd", "values": {"spo2": 90}}, None),
    ],
)
def test_dry_run_bad_input_is_422(client, auth, body, location):
    response = client.post("/api/v1/rules/evaluate", json=body, headers=auth("clinician"))
    assert response.status_code == 422
    if location:
        assert response.json()["location"] == location


def test_publish_validates_versions_and_diffs(client, auth):
    clinician = auth("clinician", subject="hpr-9000001")
    doc = current(client, clinician)
    draft = copy.deepcopy(doc["pathway"])
    draft["title_en"] = draft["title_en"] + " (revised)"
    published = client.put(
        "/api/v1/pathways/copd",
        json={"pathway": draft, "reason": "clearer title"},
        headers=clinician,
    )
    assert published.status_code == 201, published.text
    assert published.json()["version"] == doc["version"] + 1
    history = client.get("/api/v1/pathways/copd/versions", headers=clinician).json()
    assert history[0]["author"] == "hpr-9000001" and history[0]["reason"] == "clearer title"
    assert any("title_en" in c["path"] for c in history[0]["changes"])
    old = client.get(f"/api/v1/pathways/copd?version={doc['version']}", headers=clinician).json()
    assert old["pathway"]["title_en"] == doc["pathway"]["title_en"]
    same = client.put(
        "/api/v1/pathways/copd", json={"pathway": draft, "reason": "again"}, headers=clinician
    )
    assert same.status_code == 422  # nothing changed: no new version


def test_bad_draft_lists_each_problem_and_the_version_in_force_stays(client, auth):
    clinician = auth("clinician")
    doc = current(client, clinician)
    draft = copy.deepcopy(doc["pathway"])
    draft["measurements"][0]["unit"] = "furlongs"
    draft["rules"] = [r for r in draft["rules"] if r.get("level") != "red"][:1]
    draft["rule_sets"] = []
    checked = client.post("/api/v1/pathways/validate", json=draft, headers=clinician).json()
    assert checked["valid"] is False and len(checked["problems"]) >= 2
    assert all(p["path"].startswith("/") for p in checked["problems"])
    refused = client.put(
        "/api/v1/pathways/copd", json={"pathway": draft, "reason": "oops"}, headers=clinician
    )
    assert refused.status_code == 422
    assert len(refused.json()["problems"]) == len(checked["problems"])
    assert current(client, clinician)["version"] == doc["version"]


def test_only_editors_may_publish(client, auth):
    doc = current(client, auth("clinician"))
    draft = {**doc["pathway"], "title_en": "x"}
    response = client.put(
        "/api/v1/pathways/copd",
        json={"pathway": draft, "reason": "try"},
        headers=auth("ml-engineer"),
    )
    assert response.status_code == 403


def test_published_change_applies_to_new_assessments_only(client, auth):
    clinician, integration = auth("clinician"), auth("integration")
    pid = enrol(client, clinician)["id"]
    post_fhir(client, "/fhir/Observation", observation(pid, "spo2", 95, NOW, "a1"), integration)
    before = client.get(f"/api/v1/patients/{pid}/assessments", headers=clinician).json()[0]
    doc = current(client, clinician)
    draft = {**doc["pathway"], "title_nb": doc["pathway"]["title_nb"] + " v2"}
    published = client.put(
        "/api/v1/pathways/copd", json={"pathway": draft, "reason": "renamed"}, headers=clinician
    )
    assert published.status_code == 201, published.text
    post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "spo2", 95, NOW + timedelta(minutes=5), "a2"),
        integration,
    )
    after = client.get(f"/api/v1/patients/{pid}/assessments", headers=clinician).json()
    assert after[0]["pathway_version"] == doc["version"] + 1
    assert after[1]["id"] == before["id"] and after[1]["pathway_version"] == doc["version"]
    assert after[1]["rule_set_hash"] == before["rule_set_hash"] != after[0]["rule_set_hash"]


def test_dry_run_for_a_patient_matches_what_ingestion_stored(client, auth):
    clinician, integration = auth("clinician"), auth("integration")
    pid = enrol(client, clinician)["id"]
    for d in range(5, -1, -1):
        post_fhir(
            client,
            "/fhir/Observation",
            observation(pid, "spo2", 95 - d, NOW - timedelta(days=d), f"d{d}"),
            integration,
        )
    stored = client.get(f"/api/v1/patients/{pid}/assessments", headers=clinician).json()[0]
    dry = client.post("/api/v1/rules/evaluate", json={"patient_id": pid}, headers=clinician).json()
    assert dry["level"] == stored["level"]
    assert dry["probability"] == pytest.approx(stored["probability"])
    assert [f["rule"] for f in dry["fired"]] == [r["rule"] for r in stored["explanation"]["rules"]]
    assert (
        len(client.get(f"/api/v1/patients/{pid}/assessments", headers=clinician).json()) == 6
    )  # the dry run stored nothing


def test_personal_spo2_threshold_for_a_copd_patient(client, auth):
    """The README's worked example: habitual SpO2 88 % should not alarm every day."""
    clinician = auth("clinician", subject="hpr-1234567")
    integration = auth("integration")
    pid = enrol(client, clinician)["id"]
    post_fhir(client, "/fhir/Observation", observation(pid, "spo2", 88, NOW, "h1"), integration)
    fired = client.get(f"/api/v1/patients/{pid}/assessments", headers=clinician).json()[0][
        "explanation"
    ]["rules"]
    assert "spo2-low" in [r["rule"] for r in fired]
    override = client.post(
        f"/api/v1/patients/{pid}/overrides",
        headers=clinician,
        json={
            "rule": "spo2-low",
            "bands": _personal_spo2_bands(client, clinician),
            "reason": "Habitual SpO2 86–89 % in stable COPD (GOLD 4)",
            "expires_at": (NOW + timedelta(days=90)).isoformat(),
        },
    )
    assert override.status_code == 201, override.text
    # Overrides apply by the reading's time (so a replay is reproducible): measure after it.
    post_fhir(
        client,
        "/fhir/Observation",
        observation(pid, "spo2", 85, datetime.now(UTC) + timedelta(seconds=1), "h2"),
        integration,
    )
    latest = client.get(f"/api/v1/patients/{pid}/assessments", headers=clinician).json()[0]
    personal = [r for r in latest["explanation"]["rules"] if r["rule"] == "spo2-low"]
    assert personal and personal[0]["override"]["author"] == "hpr-1234567"
    assert "hpr-1234567" in personal[0]["text_en"]
    revoked = client.post(
        f"/api/v1/patients/{pid}/overrides/{override.json()['id']}/revoke", headers=clinician
    )
    assert revoked.status_code == 201 and revoked.json()["revoked"] is True
    listed = client.get(f"/api/v1/patients/{pid}/overrides", headers=clinician).json()
    assert len(listed) == 2  # the revocation is a new entry; the original is untouched


def _personal_spo2_bands(client, headers):
    rule = next(r for r in current(client, headers)["pathway"]["rules"] if r["id"] == "spo2-low")
    # Every band edge 4 points lower: red below 84 %, yellow 84–87 %.
    return [
        {
            k: (v - 4 if k in ("lt", "le", "gt", "ge") and v is not None else v)
            for k, v in band.items()
        }
        for band in rule["bands"]
    ]


def test_override_with_expiry_in_the_past_is_refused(client, auth):
    clinician = auth("clinician")
    pid = enrol(client, clinician)["id"]
    response = client.post(
        f"/api/v1/patients/{pid}/overrides",
        headers=clinician,
        json={
            "rule": "spo2-low",
            "thresholds": {"yellow": 86},
            "reason": "habitual",
            "expires_at": (NOW - timedelta(days=1)).isoformat(),
        },
    )
    assert response.status_code == 422


def test_a_published_change_appears_in_the_audit_log(client, auth):
    clinician = auth("clinician", subject="hpr-7000007")
    doc = current(client, clinician)
    draft = {**doc["pathway"], "title_en": doc["pathway"]["title_en"] + " (audited)"}
    assert (
        client.put(
            "/api/v1/pathways/copd", json={"pathway": draft, "reason": "audit"}, headers=clinician
        ).status_code
        == 201
    )
    rows = client.get("/api/v1/audit", headers=auth("compliance")).json()
    rows = rows if isinstance(rows, list) else rows.get("entries", [])
    writes = [
        r
        for r in rows
        if r["action"] == "write" and r["resource"] == "PUT /api/v1/pathways/{pathway_id}"
    ]
    assert writes and writes[-1]["actor"] == "hpr-7000007" and writes[-1]["outcome"] == 201


def test_a_new_pathway_by_configuration_alone_runs_end_to_end(client, auth):
    """A kidney-failure pathway: published as data, a patient enrolled on it, a reading scored."""
    clinician = auth("clinician")
    heart_failure = current(client, clinician, "heart-failure")["pathway"]
    draft = {
        **heart_failure,
        "id": "kidney-failure",
        "version": 1,
        "title_nb": "Nyresvikt",
        "title_en": "Kidney failure",
        "rules": [
            rule
            for rule in heart_failure["rules"]
            if rule.get("measurement") in ("weight", "systolic_bp", "spo2")
        ],
    }
    checked = client.post("/api/v1/pathways/validate", json=draft, headers=clinician).json()
    assert checked == {"valid": True, "problems": []}
    created = client.put(
        "/api/v1/pathways/kidney-failure",
        json={"pathway": draft, "reason": "new patient group"},
        headers=clinician,
    )
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1 and created.json()["status"] == "pending"
    # A new pathway is all new thresholds: it is in force only once a second clinician approves.
    approved = client.post(
        "/api/v1/pathways/kidney-failure/versions/1/approve",
        json={"reason": "reviewed with the nephrologists"},
        headers=auth("clinician", subject="hpr-second"),
    )
    assert approved.status_code == 201, approved.text
    pid = enrol(client, clinician, pathway="kidney-failure")["id"]
    post_fhir(
        client, "/fhir/Observation", observation(pid, "spo2", 84, NOW, "k1"), auth("integration")
    )
    [assessment] = client.get(f"/api/v1/patients/{pid}/assessments", headers=clinician).json()
    assert assessment["pathway_id"] == "kidney-failure" and assessment["pathway_version"] == 1
    assert assessment["level"] == "red"
    assert any(r["level"] == "red" for r in assessment["explanation"]["rules"])
    listed = {p["id"] for p in client.get("/api/v1/pathways", headers=clinician).json()}
    assert "kidney-failure" in listed
