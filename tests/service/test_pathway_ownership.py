"""Pathways are owned: regional templates, each organisation's own versions, four-eyes publishing.

Issue 12, finding 2: a clinician of organisation B published `copd` with the SpO2 red band moved
from < 88 to < 70 and organisation A's patients were then scored by it; a unit-limited clinician
locked every clinician out of `heart-failure`; the version history named no organisation.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import observation, post_fhir

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
ORG_A = "983974899"  # the development organisation
ORG_B = "974557746"


@pytest.fixture
def settings(make_settings, any_database_url):
    """Ownership and four-eyes are store rules: they run on SQLite and on PostgreSQL."""
    return make_settings(database_url=any_database_url)


def make_fnr(birth: date, individual: int) -> str:
    """A synthetic fødselsnummer with both classic mod-11 check digits."""
    k1w, k2w = (3, 7, 6, 1, 8, 9, 4, 5, 2), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    for ind in range(individual, individual + 200):
        base = [int(c) for c in f"{birth:%d%m%y}{ind % 1000:03d}"]
        k1 = 11 - sum(d * w for d, w in zip(base, k1w, strict=True)) % 11
        k1 = 0 if k1 == 11 else k1
        k2 = 11 - sum(d * w for d, w in zip([*base, k1], k2w, strict=True)) % 11
        k2 = 0 if k2 == 11 else k2
        if k1 < 10 and k2 < 10:
            return "".join(map(str, [*base, k1, k2]))
    raise ValueError("no valid number in range")


def enrol_in(client: Any, headers: dict[str, str], organisation: str, individual: int) -> str:
    birth = date(1950, 3, 1)
    response = client.post(
        "/api/v1/patients",
        json={
            "identifier": make_fnr(birth, individual),
            "birth_date": birth.isoformat(),
            "sex": "female",
            "pathway": "copd",
            "organisation": organisation,
            "unit": "lungs",
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def latest_level(client: Any, headers: dict[str, str], patient_id: str) -> str:
    assessments = client.get(f"/api/v1/patients/{patient_id}/assessments", headers=headers)
    assert assessments.status_code == 200, assessments.text
    return str(assessments.json()[0]["level"])


def send_spo2(client: Any, patient_id: str, value: float, minutes: int, key: str, org: str) -> None:
    sent = post_fhir(
        client,
        "/fhir/Observation",
        observation(patient_id, "spo2", value, NOW + timedelta(minutes=minutes), key),
        client.auth_for("integration", org),
    )
    assert sent.status_code in (200, 201), sent.text


def spo2_red_below(doc: dict[str, Any], limit: float) -> dict[str, Any]:
    """The pathway with the spo2-low red band moved to below ``limit`` (yellow up to 92)."""
    draft = copy.deepcopy(doc)
    rule = next(r for r in draft["rules"] if r["id"] == "spo2-low")
    rule["bands"] = [
        {"lt": limit, "level": "red"},
        {"ge": limit, "lt": 92, "level": "yellow"},
        {"ge": 92},
    ]
    return draft


@pytest.fixture
def orgs(client: Any, auth: Any) -> Any:
    """Tokens for two organisations: ``orgs.a("clinician", "hpr-1")`` and the same for B."""

    class Orgs:
        @staticmethod
        def a(role: str, subject: str | None = None, units: list[str] | None = None) -> Any:
            return auth(role, organisation=ORG_A, subject=subject, units=units)

        @staticmethod
        def b(role: str, subject: str | None = None, units: list[str] | None = None) -> Any:
            return auth(role, organisation=ORG_B, subject=subject, units=units)

    client.auth_for = lambda role, org: auth(role, organisation=org)
    return Orgs()


def in_force(client: Any, headers: dict[str, str], pid: str = "copd") -> dict[str, Any]:
    response = client.get(f"/api/v1/pathways/{pid}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def publish(
    client: Any, headers: dict[str, str], draft: dict[str, Any], reason: str, **scope: Any
) -> Any:
    return client.put(
        f"/api/v1/pathways/{draft['id']}",
        json={"pathway": draft, "reason": reason, **scope},
        headers=headers,
    )


def decide(client: Any, headers: dict[str, str], pid: str, version: int, what: str) -> Any:
    return client.post(
        f"/api/v1/pathways/{pid}/versions/{version}/{what}",
        json={"reason": f"{what}d after review"},
        headers=headers,
    )


def test_b_clinician_publishing_copd_leaves_a_patient_red_at_spo2_71(client, orgs):
    """The finding: B moved red to < 70 and A's SpO2 71 % became yellow. Now B's version is B's."""
    a_clinician, b_author, b_second = (
        orgs.a("clinician"),
        orgs.b("clinician", "hpr-b-author"),
        orgs.b("clinician", "hpr-b-second"),
    )
    a_patient = enrol_in(client, a_clinician, ORG_A, 100)
    b_patient = enrol_in(client, b_author, ORG_B, 200)
    draft = spo2_red_below(in_force(client, b_author)["pathway"], 70)
    proposed = publish(client, b_author, draft, "our COPD patients live at lower saturations")
    assert proposed.status_code == 201, proposed.text
    version = proposed.json()["version"]
    approved = decide(client, b_second, "copd", version, "approve")

    send_spo2(client, a_patient, 71, 0, "a-71", ORG_A)
    send_spo2(client, b_patient, 71, 0, "b-71", ORG_B)
    # The finding itself: A's patient at SpO2 71 % is still red under A's (the template's) bands.
    assert latest_level(client, a_clinician, a_patient) == "red"
    assert proposed.json()["organisation"] == ORG_B
    assert approved.status_code == 201, approved.text
    assert latest_level(client, b_author, b_patient) == "yellow"  # B's own version scores B

    # A reads its own (the template's) version everywhere: API, list and dry run.
    assert in_force(client, a_clinician)["organisation"] is None
    assert in_force(client, b_author)["version"] == version
    listed = {p["id"]: p for p in client.get("/api/v1/pathways", headers=a_clinician).json()}
    assert listed["copd"]["organisation"] is None and listed["copd"]["version"] != version
    dry = {"pathway": "copd", "values": {"spo2": 71}, "age_years": 75}
    assert client.post("/api/v1/rules/evaluate", json=dry, headers=a_clinician).json()["level"] == (
        "red"
    )
    assert (
        client.post("/api/v1/rules/evaluate", json=dry, headers=b_author).json()["level"]
        == "yellow"
    )
    # B cannot publish into A's organisation, nor read or approve A's versions.
    into_a = publish(client, b_author, draft, "for them", organisation=ORG_A)
    assert into_a.status_code == 403
    assert (
        client.get(f"/api/v1/pathways/copd?version={version}", headers=a_clinician).status_code
        == 404
    )
    assert (
        client.get(f"/api/v1/pathways/copd?organisation={ORG_B}", headers=a_clinician).status_code
        == 403
    )


def test_unit_limited_clinician_cannot_lock_editors_out(client, orgs):
    limited = orgs.a("clinician", "hpr-unit", units=["heart"])
    doc = in_force(client, limited, "heart-failure")["pathway"]
    draft = {**doc, "editors": {"roles": ["admin"], "units": []}}
    response = publish(client, limited, draft, "only admins from now on")
    assert response.status_code == 422, response.text
    assert response.json()["location"] == "/editors/roles"
    assert "editors.roles" in response.json()["detail"] or any(
        "editors.roles" in p["message"] for p in response.json()["problems"]
    )
    # Nor can an administrator: nobody locks the clinicians out.
    admin = publish(client, orgs.a("admin"), draft, "only admins")
    assert admin.status_code == 422 and admin.json()["location"] == "/editors/roles"
    # A unit's own version cannot shut that unit's clinicians out either.
    unit_only = {**doc, "editors": {"roles": ["clinician"], "units": ["lungs"]}}
    response = publish(client, limited, unit_only, "lungs only", organisation=ORG_A, unit="heart")
    assert response.status_code == 422 and response.json()["location"] == "/editors/units"
    assert in_force(client, limited, "heart-failure")["version"] == 1


def test_version_history_names_organisation_author_and_approver(client, orgs):
    author, approver = orgs.a("clinician", "hpr-author"), orgs.a("clinician", "hpr-approver")
    draft = spo2_red_below(in_force(client, author)["pathway"], 86)
    version = publish(client, author, draft, "local target 86 %").json()["version"]
    assert decide(client, approver, "copd", version, "approve").status_code == 201
    history = client.get("/api/v1/pathways/copd/versions", headers=author).json()
    newest = history[0]
    assert newest["version"] == version
    assert newest["organisation"] == ORG_A
    assert newest["author"] == "hpr-author" and newest["reason"] == "local target 86 %"
    assert newest["decided_by"] == "hpr-approver" and newest["status"] == "approved"
    assert newest["decision_reason"] == "approved after review" and newest["decided_at"]
    assert newest["in_force"] is True and newest["needs_approval"] is True
    assert any("spo2-low" in c["path"] for c in newest["changes"])
    template = history[-1]
    assert template["organisation"] is None and template["author"] == "system"
    # Another organisation sees the template's history, not A's versions.
    other = client.get("/api/v1/pathways/copd/versions", headers=orgs.b("clinician")).json()
    assert [v["organisation"] for v in other] == [None] * len(other)


def test_pending_change_does_not_score_until_approved(client, orgs):
    author, approver = orgs.a("clinician", "hpr-author"), orgs.a("clinician", "hpr-approver")
    patient = enrol_in(client, author, ORG_A, 300)
    template = in_force(client, author)
    draft = spo2_red_below(template["pathway"], 70)
    proposed = publish(client, author, draft, "lower red")
    assert proposed.status_code == 201, proposed.text
    version = proposed.json()["version"]
    send_spo2(client, patient, 71, 0, "p-1", ORG_A)
    assert latest_level(client, author, patient) == "red"  # the proposal scores no one yet
    assert in_force(client, author)["version"] == template["version"]  # still the template
    assert proposed.json()["status"] == "pending"
    pending = client.get(f"/api/v1/pathways/copd?version={version}", headers=author).json()
    assert pending["status"] == "pending" and pending["decided_by"] is None
    # A second proposal waits for the first to be decided.
    again = publish(client, author, spo2_red_below(template["pathway"], 80), "another")
    assert again.status_code == 409

    assert decide(client, approver, "copd", version, "approve").status_code == 201
    send_spo2(client, patient, 71, 5, "p-2", ORG_A)
    assert latest_level(client, author, patient) == "yellow"
    assessments = client.get(f"/api/v1/patients/{patient}/assessments", headers=author).json()
    assert assessments[0]["pathway_version"] == version
    assert assessments[1]["pathway_version"] == template["version"]
    assert decide(client, approver, "copd", version, "approve").status_code == 409  # decided


def test_author_cannot_approve_their_own_change(client, orgs):
    author = orgs.a("clinician", "hpr-author")
    draft = spo2_red_below(in_force(client, author)["pathway"], 85)
    version = publish(client, author, draft, "lower red").json()["version"]
    own = decide(client, author, "copd", version, "approve")
    assert own.status_code == 403, own.text
    assert "second clinician" in own.json()["detail"]
    # An administrator proposes but does not approve clinical thresholds of an organisation,
    # and a clinician of another organisation cannot even see the proposal.
    assert decide(client, orgs.a("admin", "admin-1"), "copd", version, "approve").status_code == 403
    assert decide(client, orgs.b("clinician", "hpr-b"), "copd", version, "approve").status_code == (
        404
    )
    assert in_force(client, author)["organisation"] is None
    rejected = decide(client, orgs.a("clinician", "hpr-second"), "copd", version, "reject")
    assert rejected.status_code == 201 and rejected.json()["status"] == "rejected"
    history = client.get("/api/v1/pathways/copd/versions", headers=author).json()
    assert history[0]["status"] == "rejected" and history[0]["in_force"] is False


def test_wording_changes_take_effect_at_once(client, orgs):
    editor = orgs.a("clinician", "hpr-editor")
    doc = in_force(client, editor)["pathway"]
    draft = {**doc, "title_en": doc["title_en"] + " (Haukeland)"}
    draft["rules"] = [
        {**r, "text_en": "Low oxygen saturation"} if r["id"] == "spo2-low" else r
        for r in draft["rules"]
    ]
    published = publish(client, editor, draft, "clearer wording")
    assert published.status_code == 201 and published.json()["status"] == "published"
    assert in_force(client, editor)["version"] == published.json()["version"]
    needs_none = decide(
        client, orgs.a("clinician", "x"), "copd", published.json()["version"], "approve"
    )
    assert needs_none.status_code == 409


def test_a_unit_version_scores_only_that_unit(client, orgs):
    author, approver = orgs.a("clinician", "hpr-author"), orgs.a("clinician", "hpr-approver")
    lungs = enrol_in(client, author, ORG_A, 400)  # unit "lungs"
    draft = spo2_red_below(in_force(client, author)["pathway"], 70)
    proposed = publish(client, author, draft, "lungs unit only", organisation=ORG_A, unit="lungs")
    assert proposed.status_code == 201, proposed.text
    assert (
        decide(client, approver, "copd", proposed.json()["version"], "approve").status_code == 201
    )
    send_spo2(client, lungs, 71, 0, "u-1", ORG_A)
    assert latest_level(client, author, lungs) == "yellow"
    assert (
        in_force(client, author)["organisation"] is None
    )  # the organisation still uses the template
    unit_view = client.get("/api/v1/pathways/copd?unit=lungs", headers=author).json()
    assert unit_view["unit"] == "lungs"


def test_only_admin_maintains_the_regional_templates(client, orgs):
    doc = in_force(client, orgs.a("clinician"))["pathway"]
    wording = {**doc, "title_en": doc["title_en"] + " (regional)"}
    clinician = publish(client, orgs.a("clinician"), wording, "regional", organisation=None)
    assert clinician.status_code == 403
    admin = publish(client, orgs.a("admin", "admin-1"), wording, "regional wording")
    assert admin.status_code == 201 and admin.json()["organisation"] is None
    # A template threshold change needs a second administrator.
    threshold = spo2_red_below(wording, 87)
    proposed = publish(client, orgs.a("admin", "admin-1"), threshold, "regional red below 87")
    assert proposed.json()["status"] == "pending"
    version = proposed.json()["version"]
    assert (
        decide(client, orgs.a("clinician", "hpr-c"), "copd", version, "approve").status_code == 403
    )
    assert decide(client, orgs.a("admin", "admin-2"), "copd", version, "approve").status_code == 201
    assert in_force(client, orgs.b("clinician"))["version"] == version  # every organisation


def test_batch_rescoring_uses_each_organisations_own_version(client, orgs):
    """The scheduled re-scoring evaluates many patients at once: still one version per scope."""
    from service.db.tables import Assessment

    b_author, b_second = orgs.b("clinician", "hpr-b-author"), orgs.b("clinician", "hpr-b-second")
    a_patient = enrol_in(client, orgs.a("clinician"), ORG_A, 500)
    b_patient = enrol_in(client, b_author, ORG_B, 600)
    draft = spo2_red_below(in_force(client, b_author)["pathway"], 70)
    version = publish(client, b_author, draft, "lower red in B").json()["version"]
    assert decide(client, b_second, "copd", version, "approve").status_code == 201
    send_spo2(client, a_patient, 71, 0, "ba-71", ORG_A)
    send_spo2(client, b_patient, 71, 0, "bb-71", ORG_B)
    as_of = int((NOW + timedelta(minutes=30)).timestamp())
    with client.app.state.sessions() as session:
        stored = client.app.state.services.scoring.rescore_cohort(
            session, as_of, [a_patient, b_patient]
        )
        session.commit()
        assert stored == 2
        levels = {
            row.patient_id: (row.level, row.pathway_version)
            for row in session.query(Assessment).filter(Assessment.trigger == "schedule")
        }
    assert levels[a_patient][0] == "red" and levels[a_patient][1] != version
    assert levels[b_patient] == ("yellow", version)
