"""The clinician's screen: held levels said on the card, the target saturation, the editor's why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import observation, post_fhir
from tests.web.conftest import csrf_of
from tests.web.test_pages import text_of


def card_of(html: str, patient_id: str) -> str:
    """The worklist card (list item) that links to the patient."""
    for part in html.split('<li class="item')[1:]:
        if f"/web/patients/{patient_id}" in part:
            return text_of(part.split("</li>", 1)[0])
    raise AssertionError(f"no card for {patient_id}")


def test_a_held_red_says_when_and_why_it_was_red_until_acknowledged(
    signed_in: Any, web_env: Any
) -> None:
    web = signed_in("clinician")
    pid = web_env.ids["red"]
    api = web_env.headers("clinician")
    before = next(
        i for i in web.get("/api/v1/worklist", headers=api).json() if i["patient"]["id"] == pid
    )
    assert before["level"] == "red"
    when = datetime.now(UTC) - timedelta(minutes=1)
    for name, value in (("spo2", 97), ("heart_rate", 72), ("respiratory_rate", 16)):
        sent = post_fhir(
            web,
            "/fhir/Observation",
            observation(pid, name, value, when, f"held-{name}"),
            web_env.headers("integration"),
        )
        assert sent.status_code in (200, 201), sent.text
    item = next(
        i for i in web.get("/api/v1/worklist", headers=api).json() if i["patient"]["id"] == pid
    )
    assert item["level"] == "red" and item["held"], item
    nb = card_of(web.get("/web/worklist").text, pid)
    assert "Var rød" in nb and "nå " in nb and "kvittert" in nb
    web.cookies.set("triage_lang", "en", domain="testserver.local", path="/")
    en = card_of(web.get("/web/worklist").text, pid)
    assert "Was red at" in en and f"now {item['current_level']}" in en and "SpO2" in en
    patient_page = text_of(web.get(f"/web/patients/{pid}").text)
    assert "Was red at" in patient_page
    token = csrf_of(web.get("/web/worklist").text)
    web.post(
        f"/web/worklist/{item['id']}/acknowledge",
        data={"csrf_token": token, "note": "Ringt, bedre nå", "back": "/web/worklist"},
    )
    assert "Was red at" not in card_of(web.get("/web/worklist").text, pid)


def test_target_saturation_set_on_the_patient_page_and_shown_on_the_card(
    signed_in: Any, web_env: Any
) -> None:
    web = signed_in("clinician")
    pid = web_env.ids["yellow"]
    page = web.get(f"/web/patients/{pid}").text
    assert 'name="target_saturation" value="88-92"' in page
    saved = web.post(
        f"/web/patients/{pid}/target-saturation",
        data={"csrf_token": csrf_of(page), "target_saturation": "88-92"},
        follow_redirects=False,
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("#target-heading")
    after = text_of(web.get(f"/web/patients/{pid}").text)
    assert "Målmetningen er lagret" in after and "88–92 % (NEWS2 skala 2)" in after
    patient = web.get(f"/api/v1/patients/{pid}", headers=web_env.headers("clinician")).json()
    assert patient["target_saturation"] == "88-92"
    card = card_of(web.get("/web/worklist").text, pid)
    assert "Mål for SpO2" in card and "88–92 %" in card
    refused = web.post(
        f"/web/patients/{pid}/target-saturation",
        data={"csrf_token": csrf_of(page), "target_saturation": "70-75"},
    )
    assert "Velg en målmetning." in text_of(refused.text)


def test_pathway_editor_says_why_news2_is_not_edited_there(signed_in: Any) -> None:
    html = text_of(signed_in("clinician").get("/web/pathways/copd").text)
    assert "en endret NEWS2 er ikke lenger NEWS2" in html and "målmetningen 88–92 %" in html
