"""The clinician's screen: held levels said on the card, the target saturation, the editor's why."""

from __future__ import annotations

import re
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
    nb = card_of(web.get("/web/worklist?view=cards").text, pid)
    assert "Var rød" in nb and "nå " in nb and "kvittert" in nb
    web.cookies.set("triage_lang", "en", domain="testserver.local", path="/")
    en = card_of(web.get("/web/worklist?view=cards").text, pid)
    assert "Was red at" in en and f"now {item['current_level']}" in en and "SpO2" in en
    patient_page = text_of(web.get(f"/web/patients/{pid}").text)
    assert "Was red at" in patient_page
    token = csrf_of(web.get("/web/worklist?view=cards").text)
    web.post(
        f"/web/worklist/{item['id']}/acknowledge",
        data={"csrf_token": token, "note": "Ringt, bedre nå", "back": "/web/worklist"},
    )
    assert "Was red at" not in card_of(web.get("/web/worklist?view=cards").text, pid)


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
    card = card_of(web.get("/web/worklist?view=cards").text, pid)
    assert "Mål for SpO2" in card and "88–92 %" in card
    refused = web.post(
        f"/web/patients/{pid}/target-saturation",
        data={"csrf_token": csrf_of(page), "target_saturation": "70-75"},
    )
    assert "Velg en målmetning." in text_of(refused.text)


def test_pathway_editor_says_why_news2_is_not_edited_there(signed_in: Any) -> None:
    html = text_of(signed_in("clinician").get("/web/pathways/copd").text)
    assert "en endret NEWS2 er ikke lenger NEWS2" in html and "målmetningen 88–92 %" in html


def test_handover_on_the_card_the_patient_page_and_in_the_audit_log(
    signed_in: Any, web_env: Any
) -> None:
    web = signed_in("clinician", subject="hpr-9144889")
    api = web_env.headers("clinician")
    pid = web_env.ids["stable"]
    # A red for a patient nobody has touched yet.
    when = datetime.now(UTC) - timedelta(minutes=2)
    post_fhir(
        web,
        "/fhir/Observation",
        observation(pid, "spo2", 83, when, "handover-red"),
        web_env.headers("integration"),
    )
    item = next(
        i for i in web.get("/api/v1/worklist", headers=api).json() if i["patient"]["id"] == pid
    )
    assert item["level"] == "red"
    page = web.get("/web/worklist?view=cards").text
    token = csrf_of(page)
    # Every card offers the same three buttons in the same order, whatever its state.
    for card in page.split('<li class="item')[1:]:
        buttons = [b for b in ("Kvitter", "Eskaler", "Avslutt") if f">{b}</button>" in card]
        assert buttons == ["Kvitter", "Eskaler", "Avslutt"]
    refused = web.post(
        f"/web/worklist/{item['id']}/resolve",
        data={"csrf_token": token, "back": "/web/worklist"},
    )
    assert "skriv et notat om hva som er gjort" in text_of(refused.text)
    escalated = web.post(
        f"/web/worklist/{item['id']}/escalate",
        data={
            "csrf_token": token,
            "back": "/web/worklist",
            "note": "Ber lege vurdere innleggelse",
            "recipient_hpr": "565656",
        },
        follow_redirects=False,
    )
    assert escalated.headers["location"] == f"/web/worklist#item-{item['id']}"
    page = web.get("/web/worklist?view=cards").text
    card = card_of(page, pid)
    assert ": saken er eskalert." in text_of(page)
    assert "Eskalert til HPR 565656" in card and "Ber lege vurdere innleggelse" in card
    assert "hpr-9144889" in card
    # The doctor sees it in her own list.
    doctor = web_env.headers("clinician", subject="hpr-565656", units=["heart"])
    mine = web.get("/api/v1/worklist?for_me=true", headers=doctor).json()
    assert [i["id"] for i in mine] == [item["id"]]
    patient_page = text_of(web.get(f"/web/patients/{pid}").text)
    assert "Ber lege vurdere innleggelse" in patient_page
    web.post(
        f"/web/worklist/{item['id']}/resolve",
        data={"csrf_token": token, "back": "/web/worklist", "note": "Innlagt medisinsk avdeling"},
    )
    history = text_of(web.get(f"/web/patients/{pid}").text)
    assert "Tidligere saker på arbeidslisten" in history and "Innlagt medisinsk avdeling" in history
    audit = signed_in("compliance").get(f"/web/audit?patient={pid}").text
    handover = text_of(audit.split('id="handover-heading"', 1)[1])
    assert handover.index("Innlagt medisinsk avdeling") < handover.index("Ber lege vurdere")
    assert "HPR 565656" in handover


def test_audit_page_newest_first_with_action_and_resource_filters(
    signed_in: Any, web_env: Any
) -> None:
    web = signed_in("compliance")
    html = web.get("/web/audit?user=dev-clinician").text
    stamps = re.findall(r"<tr><td>([^<]+)</td><td>dev-clinician</td>", html)
    assert stamps and "Logginnslag, nyeste først" in html
    api = web.get(
        "/api/v1/audit?user=dev-clinician&newest_first=true",
        headers=web_env.headers("compliance"),
    )
    assert api.status_code == 200, api.text
    seqs = [e["seq"] for e in api.json()["entries"]]
    assert len(seqs) > 1 and seqs == sorted(seqs, reverse=True)
    writes = web.get("/web/audit?action=write&resource=/worklist").text
    rows = re.findall(r"<tr><td>.*?</tr>", writes.split("<tbody>", 1)[1].split("</tbody>", 1)[0])
    assert rows and all("/worklist" in r and ">skrevet<" in r for r in rows)


def test_the_default_worklist_is_a_dense_table_with_counts_names_and_newest_values(
    signed_in: Any, web_env: Any
) -> None:
    named = web_env.client.post(
        "/api/v1/patients",
        json={
            "identifier": "01017000027",
            "birth_date": "1970-01-01",
            "sex": "female",
            "pathway": "heart-failure",
            "organisation": "983974899",
            "unit": "lungs",
            "display_name": "Kari  Nordmann",
        },
        headers=web_env.headers("clinician"),
    )
    assert named.status_code == 201 and named.json()["display_name"] == "Kari Nordmann"
    post_fhir(
        web_env.client,
        "/fhir/Observation",
        observation(named.json()["id"], "weight", 80, datetime.now(UTC), "kari-w"),
        web_env.headers("integration"),
    )
    web = signed_in("clinician")
    html = web.get("/web/worklist").text
    assert '<table class="worklist-table">' in html and '<li class="item' not in html
    rows = re.findall(r'<tr id="item-[^"]+" class="wl-row row-(\w+)', html)
    order = {"red": 0, "yellow": 1, "green": 2}
    assert rows and [order[r] for r in rows] == sorted(order[r] for r in rows)
    counts = text_of(html.split('class="level-counts"', 1)[1].split("</nav>", 1)[0])
    assert f"Rød {rows.count('red')}" in counts and f"Gul {rows.count('yellow')}" in counts
    red_row = next(
        text_of(r.split("</tr>", 1)[0])
        for r in html.split("<tr id=")[1:]
        if f"/web/patients/{web_env.ids['red']}" in r
    )
    assert "KOLS" in red_row and "copd" not in red_row  # the pathway's name, never its id
    assert "SpO2" in red_row and "Puls" in red_row and "%" in red_row
    assert re.search(r"[↑↓→]", red_row)  # trend arrows, also said in words
    assert "fallende" in red_row or "stigende" in red_row or "stabil" in red_row
    assert "Risiko for sykehuskontakt innen 72 t" in html
    # A name where the patient has one, with the masked number; never the full number.
    kari = web.get(f"/web/patients/{named.json()['id']}").text
    assert "<title>Kari Nordmann" in kari and "010170 *****" in text_of(kari)
    assert "01017000027" not in kari
    only_yellow = web.get("/web/worklist?level=yellow").text
    assert set(re.findall(r'class="wl-row row-(\w+)', only_yellow)) == {"yellow"}
    english = web.get("/web/worklist", cookies={"triage_lang": "en"}).text
    assert "Risk of hospital contact within 72 h" in english and "COPD" in english


def test_personal_threshold_form_names_every_rule_in_words_and_refuses_impossible_bands(
    signed_in: Any, web_env: Any
) -> None:
    web = signed_in("clinician")
    pid = web_env.ids["red"]
    page = web.get(f"/web/patients/{pid}").text
    options = dict(re.findall(r'<option value="([^"]+)"[^>]*>([^<]+)</option>', page))
    assert "spo2-low" in options and "heart-rate-above-baseline" in options  # every rule
    assert options["spo2-low"].startswith("SpO2") and "(%)" in options["spo2-low"]
    assert "(SD)" in options["heart-rate-above-baseline"]
    now = text_of(page.split('id="ov-rule-now"', 1)[1].split("</div>", 1)[0])
    assert "SpO2 < 88 % → rød" in now  # the current value, in words
    token = csrf_of(page)
    expires = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    form = {"csrf_token": token, "reason": "Habituell SpO2 87-89 %", "expires": expires}
    zero_sd = web.post(
        f"/web/patients/{pid}/overrides",
        data={**form, "rule": "heart-rate-above-baseline", "threshold_yellow": "0"},
    )
    assert zero_sd.status_code == 422
    assert "data-error-summary" in zero_sd.text and "0 standardavvik" in text_of(zero_sd.text)
    assert 'href="#ov-yellow"' in zero_sd.text  # the summary links to the field
    wrong_side = web.post(
        f"/web/patients/{pid}/overrides",
        data={**form, "rule": "spo2-low", "threshold_red": "86", "threshold_yellow": "84"},
    )
    assert wrong_side.status_code == 422 and "Gul må ligge mellom rød og normal" in wrong_side.text
    saved = web.post(
        f"/web/patients/{pid}/overrides",
        data={**form, "rule": "spo2-low", "threshold_red": "84", "threshold_yellow": "86"},
        follow_redirects=False,
    )
    assert saved.status_code == 303, text_of(saved.text)[:800]
    listed = web.get(
        f"/api/v1/patients/{pid}/overrides", headers=web_env.headers("clinician")
    ).json()
    spo2 = next(o for o in listed if o["rule"] == "spo2-low")
    assert spo2["body"]["bands"] == [
        {"lt": 84.0, "level": "red"},
        {"ge": 84.0, "lt": 86.0, "level": "yellow"},
        {"ge": 86.0},
    ]


def test_words_no_doubled_change_verb_and_no_decided_by_nothing(
    signed_in: Any, web_env: Any
) -> None:
    web = signed_in("clinician")
    pathway = text_of(web.get("/web/pathways/copd").text)
    assert "Endret Endret" not in pathway
    web.cookies.set("triage_lang", "en", domain="testserver.local", path="/")
    patient = text_of(web.get(f"/web/patients/{web_env.ids['stable']}").text)
    assert "decided by nothing" not in patient
