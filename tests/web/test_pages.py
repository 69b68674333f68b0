"""The pages through TestClient: what each shows, and that each action goes through the domain."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

from service.security.tokens import DEV_ORGANISATION
from tests.web.conftest import csrf_of

HTML = {"Accept": "text/html"}


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_worklist_in_priority_order_with_level_as_icon_and_text(signed_in: Any) -> None:
    html = signed_in("clinician").get("/web/worklist?view=cards").text
    levels = re.findall(r'<li class="item item-(\w+)"', html)
    assert levels and levels[0] == "red"
    order = {"red": 0, "yellow": 1, "green": 2}
    assert [order[lv] for lv in levels] == sorted(order[lv] for lv in levels)
    badge = re.search(
        r'<span class="level level-red">(.*?)</span></span>|'
        r'<span class="level level-red">.*?</span> Rød',
        html,
        re.S,
    )
    assert badge, "red level badge with icon and text"
    assert "▲" in html and "Rød" in html
    first = text_of(html.split('<li class="item', 2)[1])
    for label in ("Risiko", "Viktigste faktorer", "Regler som slo ut", "Siste data", "Status"):
        assert label in first
    assert "SpO2" in first  # the top factor and the fired rule name the measurement


def test_worklist_filters_and_kind_empty_state(signed_in: Any) -> None:
    web = signed_in("clinician")
    yellow = web.get("/web/worklist?level=yellow&view=cards").text
    assert "item-red" not in yellow and "item-yellow" in yellow
    empty = web.get("/web/worklist?state=resolved&level=red").text
    assert "Ingen pasienter trenger oppfølging akkurat nå." in empty
    fragment = web.get("/web/worklist/items?level=yellow&view=cards")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert "item-yellow" in fragment.text


def test_acknowledge_from_the_page_uses_the_worklist_service(signed_in: Any, web_env: Any) -> None:
    web = signed_in("clinician")
    api = web_env.headers("clinician")
    items = web.get("/api/v1/worklist", headers=api).json()
    item = next(i for i in items if i["state"] == "open" and i["level"] == "yellow")
    token = csrf_of(web.get("/web/worklist").text)
    done = web.post(
        f"/web/worklist/{item['id']}/acknowledge",
        data={"csrf_token": token, "note": "Ringt pasienten", "back": "/web/worklist"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/web/worklist#item-{item['id']}"  # keeps the place
    page = web.get("/web/worklist").text
    assert ": saken er kvittert." in page
    after = {i["id"]: i for i in web.get("/api/v1/worklist", headers=api).json()}
    assert after[item["id"]]["state"] == "acknowledged"
    assert after[item["id"]]["acknowledged_by"] == "dev-clinician"
    again = web.post(
        f"/web/worklist/{item['id']}/acknowledge",
        data={"csrf_token": token, "back": "/web/worklist"},
    )
    assert "saken kunne ikke endres" in again.text  # illegal transition told, not a crash


def test_patient_page_charts_have_text_alternatives_tables_baseline_and_thresholds(
    signed_in: Any, web_env: Any
) -> None:
    web = signed_in("clinician")
    html = web.get(f"/web/patients/{web_env.ids['red']}?days=14").text
    svgs = re.findall(r"<svg[^>]*role=\"img\"[^>]*aria-labelledby=\"([^\"]+)\"", html)
    assert len(svgs) >= 4
    for ids in svgs:
        for id_ in ids.split():
            assert f'id="{id_}"' in html
    spo2 = html.split('id="chart-spo2-caption"', 1)[1].split("</figure>", 1)[0]
    assert 'class="baseline"' in spo2 and "threshold-red" in spo2 and "threshold-yellow" in spo2
    assert "<table>" in spo2 and "siste 14 døgn" in spo2
    desc = re.search(r'<desc id="chart-spo2-desc">(.*?)</desc>', spo2, re.S).group(1)
    assert "Personlig baseline" in desc and "Grense" in desc
    assert re.search(r"\d+,\d", desc), "Norwegian decimal comma"
    text = text_of(html)
    assert "Regler som slo ut" in text and "Modell: viktigste faktorer" in text
    assert "Svar på spørreskjema" in text and "Tung pust" in text
    for days in (7, 30):
        assert web.get(f"/web/patients/{web_env.ids['red']}?days={days}").status_code == 200


def test_confidential_teen_is_marked(signed_in: Any, web_env: Any) -> None:
    web = signed_in("clinician")
    html = web.get(f"/web/patients/{web_env.ids['teen']}").text
    assert "confidential-banner" in html and "§ 3-4" in html
    adult = web.get(f"/web/patients/{web_env.ids['stable']}").text
    assert "confidential-banner" not in adult


def test_personal_threshold_form_validates_and_saves(signed_in: Any, web_env: Any) -> None:
    web = signed_in("clinician")
    pid = web_env.ids["stable"]
    token = csrf_of(web.get(f"/web/patients/{pid}").text)
    bad = web.post(
        f"/web/patients/{pid}/overrides",
        data={
            "csrf_token": token,
            "rule": "spo2-low-twice",
            "threshold_yellow": "abc",
            "reason": "x",
            "expires": "2001-01-01",
        },
    )
    assert bad.status_code == 422
    assert 'id="ov-yellow-error"' in bad.text and 'id="ov-reason-error"' in bad.text
    assert 'id="ov-expires-error"' in bad.text and 'aria-invalid="true"' in bad.text
    expires = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    ok = web.post(
        f"/web/patients/{pid}/overrides",
        data={
            "csrf_token": token,
            "rule": "spo2-low-twice",
            "threshold_yellow": "88",
            "reason": "Kjent KOLS, habituell SpO2 89-91 %",
            "expires": expires,
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303, ok.text[:2000]
    listed = web.get(
        f"/api/v1/patients/{pid}/overrides", headers=web_env.headers("clinician")
    ).json()
    assert listed[0]["rule"] == "spo2-low-twice" and listed[0]["body"]["thresholds"] == {
        "yellow": 88.0
    }
    page = web.get(f"/web/patients/{pid}").text
    assert "Kjent KOLS" in page and "Aktiv" in page


def test_pathway_editor_problem_next_to_its_field(signed_in: Any) -> None:
    web = signed_in("clinician")
    page = web.get("/web/pathways/copd").text
    assert "Gjeldende regler" in page and "Versjonshistorikk" in page
    # What the alert budget buys: each level's operating point with its validation figures.
    assert "Hva modellens varselbudsjett gir" in page
    assert "budget-2" in page and "Nye varsler per 100 pasientdøgn" in page
    token = csrf_of(page)
    fields = dict(re.findall(r'name="(/rules/[^"]+)" value="([^"]*)"', page))
    fields = {k: unescape(v) for k, v in fields.items()}
    name = next(k for k in fields if k.endswith("/window_hours"))
    response = web.post(
        "/web/pathways/copd", data={**fields, name: "-5", "csrf_token": token, "intent": "validate"}
    )
    assert response.status_code == 422
    field_id = re.search(rf'id="([^"]+)" name="{re.escape(name)}"', response.text).group(1)
    assert f'id="{field_id}-error"' in response.text
    assert f'aria-describedby="{field_id}-error"' in response.text


def test_pathway_dry_run_and_publish_with_reason(signed_in: Any, web_env: Any) -> None:
    web = signed_in("clinician")
    page = web.get("/web/pathways/copd").text
    token = csrf_of(page)
    fields = {k: unescape(v) for k, v in re.findall(r'name="(/rules/[^"]+)" value="([^"]*)"', page)}
    enabled = re.findall(r'name="(/rules/\d+/enabled)" checked', page)
    fields.update({k: "on" for k in enabled})
    red_edge = next(k for k in fields if k.endswith("/bands/0/lt") and fields[k] == "88")
    yellow_edge = red_edge.replace("/bands/0/lt", "/bands/1/ge")
    base = {**fields, red_edge: "90", yellow_edge: "90", "csrf_token": token}
    dry = web.post(
        "/web/pathways/copd",
        data={
            **base,
            "intent": "dry-run",
            "dry/spo2": "89",
            "dry/heart_rate": "80",
            "dry/age_years": "70",
        },
    )
    assert dry.status_code == 200, text_of(dry.text.split("<main", 1)[1])[-3000:]
    result = dry.text.split('class="dry-result"', 1)[1]
    assert "level-yellow" in result.split("</td>", 2)[0] + result.split("</td>", 2)[1]
    assert "level-red" in result
    no_reason = web.post("/web/pathways/copd", data={**base, "intent": "publish", "reason": ""})
    assert no_reason.status_code == 422 and 'id="reason-error"' in no_reason.text
    published = web.post(
        "/web/pathways/copd",
        data={**base, "intent": "publish", "reason": "SpO2 red below 90 locally"},
        follow_redirects=False,
    )
    assert published.status_code == 303, text_of(published.text)[:1500]
    versions = web.get(
        "/api/v1/pathways/copd/versions", headers=web_env.headers("clinician")
    ).json()
    assert versions[0]["reason"] == "SpO2 red below 90 locally"
    assert versions[0]["author"] == "dev-clinician" and versions[0]["changes"]
    assert versions[0]["status"] == "pending"  # a threshold change waits for a second clinician
    page = web.get("/web/pathways/copd").text
    history = page.split('id="history"', 1)[1]
    assert "SpO2 red below 90 locally" in history and "diff-changed" in history
    assert "Venter på godkjenning" in page and "Du foreslo denne endringen" in page
    assert 'name="decision_reason"' not in page  # the author cannot approve their own change


def test_pathway_second_clinician_approves_on_the_page(signed_in: Any, web_env: Any) -> None:
    """Four-eyes on the web: the author proposes, a second clinician approves with a reason."""
    author = web_env.headers("clinician", subject="hpr-web-author")
    client = signed_in("clinician", subject="hpr-web-second")
    current = client.get("/api/v1/pathways/post-operative", headers=author).json()["pathway"]
    draft = copy.deepcopy(current)
    rule = next(r for r in draft["rules"] if r.get("thresholds"))
    level, value = next(iter(rule["thresholds"].items()))
    rule["thresholds"][level] = value + 1
    proposed = client.put(
        "/api/v1/pathways/post-operative",
        json={"pathway": draft, "reason": "local threshold"},
        headers=author,
    )
    assert proposed.status_code == 201 and proposed.json()["status"] == "pending", proposed.text
    version = proposed.json()["version"]
    page = client.get("/web/pathways/post-operative").text
    assert "Venter på godkjenning" in page and 'name="decision_reason"' in page
    action = f"/web/pathways/post-operative/versions/{version}"
    no_reason = client.post(
        action, data={"csrf_token": csrf_of(page), "intent": "approve", "decision_reason": ""}
    )
    assert no_reason.status_code == 422 and 'id="decision_reason-error"' in no_reason.text
    approved = client.post(
        action,
        data={"csrf_token": csrf_of(page), "intent": "approve", "decision_reason": "checked"},
        follow_redirects=False,
    )
    assert approved.status_code == 303, text_of(approved.text)[:1500]
    page = client.get("/web/pathways/post-operative").text
    assert "Venter på godkjenning" not in page
    history = page.split('id="history"', 1)[1]
    assert "Avgjort av hpr-web-second" in history and "hpr-web-author" in history
    assert f"Organisasjon {DEV_ORGANISATION}" in history


def test_pathway_page_is_read_only_for_ml_engineers(signed_in: Any) -> None:
    web = signed_in("ml-engineer")
    page = web.get("/web/pathways/copd").text
    assert "Gjeldende regler" in page and "intent" not in page
    assert (
        web.post("/web/pathways/copd", data={"csrf_token": csrf_of(page)}, headers=HTML).status_code
        == 403
    )


def test_models_page_and_reload_with_confirmation(signed_in: Any) -> None:
    web = signed_in("ml-engineer")
    page = web.get("/web/models").text
    assert "handmade-test-model" in page and "0.0.1" in page and "syntetiske data" in page
    token = csrf_of(page)
    unconfirmed = web.post("/web/models/reload", data={"csrf_token": token})
    assert "Kryss av" in unconfirmed.text
    confirmed = web.post("/web/models/reload", data={"csrf_token": token, "confirm": "yes"})
    assert "Modellen er lastet på nytt: handmade-test-model 0.0.1." in confirmed.text
    compliance = signed_in("compliance").get("/web/models").text
    assert "/web/models/reload" not in compliance


def test_monitoring_lists_reports_and_signs_off(signed_in: Any, web_env: Any) -> None:
    import uuid

    from service.db.engine import make_engine, make_session_factory, transaction
    from service.db.tables import DriftReport

    web = signed_in("compliance")
    page = web.get("/web/monitoring").text
    report_id = str(uuid.uuid4())
    html_path = web_env.settings.var_dir / "reports" / "drift-test.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text("<html><body>evidently</body></html>")
    engine = make_engine(web_env.settings.resolved_database_url)
    now = datetime.now(UTC)
    with transaction(make_session_factory(engine)) as session:
        session.add(
            DriftReport(
                id=report_id,
                report_key=f"test-{report_id}",
                window_start=now - timedelta(days=7),
                window_end=now,
                model_version="0.0.1",
                pathway="copd",
                organisation=None,
                verdict="drift",
                drifted_features=["spo2_pct_latest"],
                summary={},
                json_path=str(html_path.with_suffix(".json")),
                html_path=str(html_path),
                created_at=now,
                created_by="test",
            )
        )
    engine.dispose()
    if "Ingen driftrapporter" not in page:
        assert "<table>" in page
    listing = web.get("/web/monitoring").text
    assert "verdict-drift" in listing and "Ikke godkjent" in listing
    detail = web.get(f"/web/monitoring/drift-reports/{report_id}").text
    assert "<iframe" in detail and 'sandbox="allow-scripts"' in detail
    framed = web.get(f"/web/monitoring/drift-reports/{report_id}/html")
    assert framed.status_code == 200 and "sandbox" in framed.headers["content-security-policy"]
    token = csrf_of(detail)
    bad = web.post(
        f"/web/monitoring/drift-reports/{report_id}/sign-off",
        data={"csrf_token": token, "decision": "", "comment": ""},
    )
    assert bad.status_code == 422 and 'id="decision-error"' in bad.text
    ok = web.post(
        f"/web/monitoring/drift-reports/{report_id}/sign-off",
        data={
            "csrf_token": token,
            "decision": "action-required",
            "comment": "Retrain with the autumn cohort",
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert "Tiltak kreves" in web.get("/web/monitoring").text
    ml = signed_in("ml-engineer")
    assert (
        ml.post(
            f"/web/monitoring/drift-reports/{report_id}/sign-off",
            data={"csrf_token": csrf_of(ml.get("/web/monitoring").text)},
            headers=HTML,
        ).status_code
        == 403
    )


def test_audit_search_and_access_log_export(signed_in: Any, web_env: Any) -> None:
    pid = web_env.ids["red"]
    signed_in("clinician").get(f"/web/patients/{pid}")  # an access to find
    web = signed_in("compliance")
    page = web.get(f"/web/audit?patient={pid}&user=dev-clinician").text
    assert "GET /web/patients/{patient_id}" in page
    assert "/web/audit/access-report.csv?patient=" in page
    export = web.get(f"/web/audit/access-report.csv?patient={pid}")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    assert "dev-clinician" in export.text and "/web/patients/{patient_id}" in export.text
    bad = web.get("/web/audit?patient=15076500565")
    assert bad.status_code == 422 and 'id="a-patient-error"' in bad.text
    assert "15076500565" not in bad.text.split("<main", 1)[1].split('value="', 1)[0]


def test_language_choice_is_remembered(signed_in: Any) -> None:
    web = signed_in("clinician")
    token = csrf_of(web.get("/web/worklist").text)
    switched = web.post(
        "/web/language",
        data={"csrf_token": token, "lang": "en", "next": "/web/worklist"},
        follow_redirects=False,
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/web/worklist"
    assert "triage_lang=en" in switched.headers["set-cookie"]
    english = web.get("/web/worklist?view=cards").text
    assert '<html lang="en">' in english and "Worklist" in english and "Top factors" in english
    nn = web.post(
        "/web/language",
        data={"csrf_token": token, "lang": "nn", "next": "/web/worklist"},
        follow_redirects=False,
    )
    assert nn.status_code == 303, nn.text[:300]
    nynorsk = web.get("/web/worklist?view=cards").text
    assert '<html lang="nn">' in nynorsk and "Viktigaste faktorar" in nynorsk
    refused = web.post("/web/language", data={"csrf_token": token, "lang": "de"})
    assert refused.status_code == 400
    assert (
        "evil"
        not in web.post(
            "/web/language",
            data={"csrf_token": token, "lang": "nb", "next": "https://evil.example/"},
            follow_redirects=False,
        ).headers["location"]
    )


def test_every_page_in_every_language_shows_no_message_ids(signed_in: Any, web_env: Any) -> None:
    """A key missing from a catalogue would show as its id ("level:red") or in English."""
    pages = {
        "clinician": [
            "/web/worklist",
            f"/web/patients/{web_env.ids['red']}",
            f"/web/patients/{web_env.ids['teen']}",
            "/web/pathways",
            "/web/pathways/copd",
        ],
        "compliance": ["/web/monitoring", "/web/audit?user=dev-clinician", "/web/models"],
    }
    ids = re.compile(
        r"\b(role|level|state|language|sex|decided|rule|field|op|bound|measurement"
        r"|change|verdict|decision|audit):[a-z_+>=<-]+\b"
    )
    for role, paths in pages.items():
        web = signed_in(role)
        for lang in ("nb", "nn", "en"):
            web.cookies.set("triage_lang", lang, domain="testserver.local", path="/")
            for path in paths:
                html = web.get(path).text
                visible = text_of(re.sub(r"<(script|style)[^>]*>.*?</\1>", "", html, flags=re.S))
                assert not ids.search(visible), (lang, path, ids.search(visible))
                assert f'<html lang="{lang}">' in html
                if lang != "en":
                    assert "Sign out" not in visible and "Skip to main content" not in visible


def test_worklist_shows_the_most_urgent_first_then_all_on_request(
    signed_in: Any, monkeypatch: Any
) -> None:
    from service.web import pages

    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    web = signed_in("clinician")
    first = web.get("/web/worklist?view=cards").text
    assert len(re.findall(r'<li class="item ', first)) == 2
    assert "De 2 mest hastende sakene" in first and "all=1" in first
    everything = web.get("/web/worklist?all=1&view=cards").text
    assert len(re.findall(r'<li class="item ', everything)) > 2
    assert "Vis alle saker" not in everything


def test_pathway_dry_run_on_a_chosen_patient(signed_in: Any, web_env: Any) -> None:
    web = signed_in("clinician")
    page = web.get("/web/pathways/copd").text
    assert web_env.ids["red"] in page  # offered in the patient chooser
    fields = {k: unescape(v) for k, v in re.findall(r'name="(/rules/[^"]+)" value="([^"]*)"', page)}
    fields.update({k: "on" for k in re.findall(r'name="(/rules/\d+/enabled)" checked', page)})
    dry = web.post(
        "/web/pathways/copd",
        data={
            **fields,
            "csrf_token": csrf_of(page),
            "intent": "dry-run",
            "dry_patient": web_env.ids["red"],
        },
    )
    assert dry.status_code == 200, text_of(dry.text)[-1500:]
    result = dry.text.split('class="dry-result"', 1)[1]
    assert result.count("level-red") == 2  # no change: the same level now and with the draft
