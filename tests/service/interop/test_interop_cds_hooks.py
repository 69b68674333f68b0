"""CDS Hooks 2.0: discovery, the patient-view service, and cards checked against the
specification's required fields and enumerations (https://cds-hooks.hl7.org/2.0/)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import pytest
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from service.api.cds_hooks import (
    SERVICE_ID,
    CardInputs,
    build_cards,
    summary_text,
)
from service.db.tables import Assessment, WorklistItem

# ---- the specification's shapes (extra="forbid": a misspelt field fails) --------------------


class Coding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str | None = None
    code: str
    display: str | None = None


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1)
    url: HttpUrl | None = None
    icon: HttpUrl | None = None
    topic: Coding | None = None


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1)
    url: HttpUrl
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None


class Card(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uuid: UUID | None = None
    summary: str = Field(min_length=1, max_length=139)  # "<140-character"
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[dict[str, Any]] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None


class CdsResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cards: list[Card]
    systemActions: list[dict[str, Any]] | None = None


class DiscoveredService(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    services: list[DiscoveredService]


# ---- helpers ---------------------------------------------------------------------------------


def hook_request(patient_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "hookInstance": str(uuid.uuid4()),
        "hook": "patient-view",
        "context": {"userId": "Practitioner/hpr-9144889", "patientId": patient_id},
        **extra,
    }


def call(client, headers, body, service_id=SERVICE_ID):
    return client.post(f"/cds-services/{service_id}", json=body, headers=headers)


def prefetched_patient(fnr: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "dips-4711",
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": fnr}],
    }


# ---- discovery -------------------------------------------------------------------------------


def test_discovery_lists_the_patient_view_service_with_a_patient_prefetch(client, auth):
    response = client.get("/cds-services", headers=auth("integration"))
    assert response.status_code == 200
    services = Discovery.model_validate(response.json()).services
    assert [(s.hook, s.id) for s in services] == [("patient-view", SERVICE_ID)]
    assert services[0].prefetch == {"patient": "Patient/{{context.patientId}}"}


# ---- cards over HTTP -------------------------------------------------------------------------


def test_a_deteriorating_patient_gets_one_valid_card(client, auth, patient_with_history):
    patient = patient_with_history(last_spo2=85)
    response = call(client, auth("integration"), hook_request(patient["id"]))
    assert response.status_code == 200, response.text
    cards = CdsResponse.model_validate(response.json()).cards
    assert len(cards) == 1
    card = cards[0]
    with client.app.state.sessions() as s:
        item = s.query(WorklistItem).filter_by(patient_id=patient["id"]).one()
    assert card.indicator == {"red": "critical", "yellow": "warning"}[item.level]
    assert card.summary.startswith(("Høg risiko for forverring (", "Moderat risiko for "))
    assert "SpO2" in card.summary  # the top factor, or the SpO2 rule that set the level
    assert "**Viktigaste faktorar**" in card.detail and "SpO2" in card.detail
    assert card.source.url is not None and str(card.source.url).endswith("/cds-services/model-card")
    assert card.links and card.links[0].type == "absolute" and item.id in str(card.links[0].url)
    # The card's source link opens the model card, in a browser: no token needed.
    card_text = client.get("/cds-services/model-card")
    assert card_text.status_code == 200 and "handmade-test-model" in card_text.text
    # The card says why it may be dismissed (CDS Hooks 2.0 overrideReasons).
    assert card.overrideReasons and all(r.system and r.display for r in card.overrideReasons)


def test_a_clinician_in_the_unit_sees_the_card_one_outside_does_not(
    client, auth, patient_with_history
):
    patient = patient_with_history(last_spo2=85, unit="lungs")
    body = hook_request(patient["id"])
    assert len(call(client, auth("clinician", units=["lungs"]), body).json()["cards"]) == 1
    assert call(client, auth("clinician", units=["heart"]), body).json() == {"cards": []}


def test_nothing_to_say_gives_no_card(client, auth, patient_with_history):
    stable = patient_with_history(last_spo2=96)
    with client.app.state.sessions() as s:
        assert s.query(WorklistItem).filter_by(patient_id=stable["id"]).count() == 0
    response = call(client, auth("integration"), hook_request(stable["id"]))
    assert response.status_code == 200 and response.json() == {"cards": []}


def test_dips_patient_id_is_matched_through_the_prefetched_fodselsnummer(
    client, auth, patient_with_history
):
    from tests.service.interop.conftest import FNRS

    patient_with_history(last_spo2=85)  # the first test patient: FNRS[0]
    body = hook_request("dips-4711", prefetch={"patient": prefetched_patient(FNRS[0])})
    response = call(client, auth("integration"), body)
    assert response.status_code == 200 and len(response.json()["cards"]) == 1
    # A person who is not in home follow-up: nothing to say.
    body = hook_request("dips-4712", prefetch={"patient": prefetched_patient("01017000027")})
    assert call(client, auth("integration"), body).json() == {"cards": []}


def test_an_unidentifiable_patient_is_412_precondition_failed(client, auth):
    response = call(client, auth("integration"), hook_request("dips-unknown"))
    assert response.status_code == 412
    assert "prefetch" in response.json()["detail"]
    outcome = {"resourceType": "OperationOutcome", "issue": []}
    response = call(
        client, auth("integration"), hook_request("dips-unknown", prefetch={"patient": outcome})
    )
    assert response.status_code == 412


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda b: b.pop("hookInstance"), "hookInstance"),
        (lambda b: b.update(hookInstance="not-a-uuid"), "hookInstance"),
        (lambda b: b["context"].pop("patientId"), "context.patientId"),
        (lambda b: b["context"].pop("userId"), "context.userId"),
        (lambda b: b["context"].update(userId="Device/1"), "context.userId"),
        (
            lambda b: b.update(
                fhirAuthorization={
                    "access_token": "t",
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "scope": "user/*.read",
                    "subject": "triage",
                }
            ),
            "fhirServer",
        ),
        (
            lambda b: b.update(
                fhirServer="https://dips.example/fhir",
                fhirAuthorization={
                    "access_token": "t",
                    "token_type": "MAC",
                    "expires_in": 300,
                    "scope": "s",
                    "subject": "x",
                },
            ),
            "fhirAuthorization.token_type",
        ),
        (lambda b: b.update(hook="order-sign"), "hook"),
    ],
)
def test_malformed_requests_are_400_and_name_the_field(client, auth, mutate, where):
    body = hook_request("p1")
    mutate(body)
    response = call(client, auth("integration"), body)
    assert response.status_code == 400, response.text
    assert where.split(".")[-1] in response.json()["detail"]


def test_not_json_is_400_and_an_unknown_service_is_404(client, auth):
    response = client.post(
        f"/cds-services/{SERVICE_ID}",
        content=b"{oops",
        headers={**auth("integration"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    response = call(client, auth("integration"), hook_request("p1"), service_id="nope")
    assert response.status_code == 404 and SERVICE_ID in response.json()["detail"]


def test_a_valid_request_with_fhir_authorization_is_accepted(client, auth, patient_with_history):
    patient = patient_with_history(last_spo2=85)
    body = hook_request(
        patient["id"],
        fhirServer="https://dips.example/fhir",
        fhirAuthorization={
            "access_token": "opaque",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read",
            "subject": "triage-cds",
        },
    )
    assert call(client, auth("integration"), body).status_code == 200


def test_roles(client, auth):
    body = hook_request("p1")
    assert client.get("/cds-services").status_code == 401
    assert call(client, {}, body).status_code == 401
    assert call(client, auth("ml-engineer"), body).status_code == 403
    assert call(client, auth("compliance"), body).status_code == 403


# ---- card content without HTTP -----------------------------------------------------------------

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def assessment(
    level: str,
    probability: float,
    rules: list[dict[str, Any]] | None = None,
    top: list[dict[str, Any]] | None = None,
) -> Assessment:
    return Assessment(
        id="a-1",
        patient_id="p-1",
        created_at=NOW,
        as_of=NOW,
        trigger="ingestion",
        model_name="m",
        model_version="1.0",
        pathway_id="copd",
        pathway_version=1,
        rule_set_hash="h",
        features=[],
        probability=probability,
        level=level,
        explanation={
            "top_factors": top
            if top is not None
            else [
                {
                    "feature": "spo2_pct_delta_baseline",
                    "contribution": 0.84,
                    "text_nb": "SpO2 4 prosentpoeng under personlig baseline",
                }
            ],
            "rules": rules or [],
        },
        basis=[],
        organisation="983974899",
    )


def item(level: str, state: str = "open") -> WorklistItem:
    return WorklistItem(
        id="i-1",
        patient_id="p-1",
        organisation="983974899",
        unit="lungs",
        state=state,
        level=level,
        level_rank=0,
        probability=0.8,
        assessment_id="a-1",
        opened_at=NOW,
        updated_at=NOW,
        last_data_at=NOW,
    )


@pytest.mark.parametrize(
    ("level", "indicator"), [("red", "critical"), ("yellow", "warning"), ("green", "info")]
)
def test_indicator_follows_the_triage_level(level, indicator):
    cards = build_cards(CardInputs(assessment(level, 0.5), item(level)), "http://t/")
    assert Card.model_validate(cards[0]).indicator == indicator


def test_rules_fired_are_in_the_detail_and_a_green_card_needs_a_reason():
    news2 = [
        {"rule": "news2-single-3", "text_nb": "NEWS2: SpO2 ≤ 91 % gir 3 poeng", "level": "red"}
    ]
    card = Card.model_validate(
        build_cards(CardInputs(assessment("red", 0.82, news2), None), "http://t/")[0]
    )
    assert "**Reglar som slo ut**" in card.detail
    assert "NEWS2: SpO2 ≤ 91 % gir 3 poeng" in card.detail
    assert card.summary.startswith("Høg risiko for forverring (modell 0.82) – NEWS2")
    assert [link.label for link in card.links] == ["Opne pasienten"]  # no item to link to
    assert build_cards(CardInputs(assessment("green", 0.05), None), "http://t/") == []
    assert build_cards(None, "http://t/") == []


def test_summary_is_short_and_reads_like_the_example():
    assert summary_text("red", 0.82, "SpO2 under personleg baseline") == (
        "Høg risiko for forverring (0.82) – SpO2 under personleg baseline"
    )
    assert summary_text("red", 0.04, "SpO2 < 88 %", by_rule=True) == (
        "Høg risiko for forverring (modell 0.04) – SpO2 < 88 %"
    )
    long = summary_text("yellow", 0.3, "x" * 400)
    assert len(long) < 140 and long.endswith("…")


def test_markdown_in_factor_texts_is_escaped():
    top = [{"feature": "f", "contribution": 1.0, "text_nb": "*bold* [link](http://evil)"}]
    card = build_cards(CardInputs(assessment("red", 0.9, top=top), None), "http://t/")[0]
    assert "\\*bold\\* \\[link\\](http://evil)" in card["detail"]


# ---- feedback (CDS Hooks 2.0) ------------------------------------------------------------------


def test_feedback_is_stored_and_audited(client, auth, patient_with_history):
    from service.db.tables import AuditEntry, CdsFeedback

    patient = patient_with_history(last_spo2=85)
    card = call(client, auth("integration"), hook_request(patient["id"])).json()["cards"][0]
    reason = card["overrideReasons"][1]
    body = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": reason, "userComment": "Oksymeteret satt feil"},
                "outcomeTimestamp": datetime.now(UTC).isoformat(),
            }
        ]
    }
    url = f"/cds-services/{SERVICE_ID}/feedback"
    response = client.post(url, json=body, headers=auth("integration"))
    assert response.status_code == 200, response.text
    assert client.app.state.audit.flush(10)  # audit rows are written in batches, off the request
    with client.app.state.sessions() as s:
        [stored] = s.query(CdsFeedback).all()
        audited = s.query(AuditEntry).filter(AuditEntry.resource.like("%/feedback%")).all()
    assert (stored.card, stored.outcome) == (card["uuid"], "overridden")
    assert stored.override_reason["code"] == reason["code"]
    assert stored.user_comment == "Oksymeteret satt feil"
    assert audited and audited[-1].action == "write" and audited[-1].outcome == 200
    # A reason the card did not offer, a person number in the comment, and a bad outcome: 400/422.
    body["feedback"][0]["overrideReason"]["reason"] = {"system": "x", "code": "y"}
    assert client.post(url, json=body, headers=auth("integration")).status_code == 400
    body["feedback"][0]["overrideReason"] = {"userComment": "pasient 15076500565"}
    refused = client.post(url, json=body, headers=auth("integration"))
    assert refused.status_code == 422 and "15076500565" not in refused.text
    body["feedback"][0]["outcome"] = "ignored"
    assert client.post(url, json=body, headers=auth("integration")).status_code == 400
    assert client.post(url, json=body, headers=auth("ml-engineer")).status_code == 403
    assert (
        client.post(
            "/cds-services/nope/feedback", json=body, headers=auth("integration")
        ).status_code
        == 404
    )
