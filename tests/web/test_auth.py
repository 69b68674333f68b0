"""Sign-in (code flow with PKCE against the dev issuer), the session cookie, CSRF and sign-out."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.web.conftest import csrf_of, form_fields, sign_in

HTML = {"Accept": "text/html"}


def test_sign_in_sets_a_secure_httponly_samesite_session_cookie(web: Any) -> None:
    back = sign_in(web, "clinician")
    cookie = back.headers["set-cookie"]
    assert cookie.startswith("triage_session=")
    for flag in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/web"):
        assert flag in cookie
    assert back.headers["location"] == "/web/worklist"
    page = web.get("/web/worklist")
    assert page.status_code == 200
    assert "Development clinician" in page.text and "Kliniker" in page.text


def test_flow_uses_pkce_s256_and_state(web: Any) -> None:
    start = web.get("/web/sign-in/start", follow_redirects=False)
    query = parse_qs(urlparse(start.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43 and query["state"][0]
    assert query["response_type"] == ["code"]


def test_callback_refuses_a_foreign_state(web: Any) -> None:
    web.get("/web/sign-in/start", follow_redirects=False)
    response = web.get("/web/callback?code=x&state=not-ours", follow_redirects=False)
    assert response.status_code == 400
    assert "sign-in" not in web.cookies.get("triage_session", "")


def _code_and_fields(web: Any) -> tuple[str, dict[str, str]]:
    start = web.get("/web/sign-in/start", follow_redirects=False)
    picker = web.get(start.headers["location"])
    fields = form_fields(picker.text, "/web/dev-issuer/authorize")
    fields["role"] = "clinician"
    issued = web.post("/web/dev-issuer/authorize", data=fields, follow_redirects=False)
    code = parse_qs(urlparse(issued.headers["location"]).query)["code"][0]
    return code, fields


def test_token_endpoint_checks_the_verifier_and_single_use(web: Any) -> None:
    code, fields = _code_and_fields(web)
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": fields["client_id"],
        "redirect_uri": fields["redirect_uri"],
        "code_verifier": "x" * 50,
    }
    wrong = web.post("/web/dev-issuer/token", data=body)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert "PKCE" in wrong.json()["error_description"]
    forged = web.post("/web/dev-issuer/token", data={**body, "code": code[:-2] + "xx"})
    assert forged.status_code == 400


def test_dev_issuer_refuses_an_unregistered_redirect(web: Any) -> None:
    start = web.get("/web/sign-in/start", follow_redirects=False)
    url = start.headers["location"].replace("callback", "elsewhere")
    assert web.get(url).status_code == 400


def test_post_without_csrf_token_is_refused(signed_in: Any, web_env: Any) -> None:
    web = signed_in("clinician")
    refused = web.post("/web/sign-out", data={}, follow_redirects=False)
    assert refused.status_code == 400
    assert web.get("/web/worklist").status_code == 200  # still signed in
    wrong = web.post("/web/sign-out", data={"csrf_token": "0" * 43}, follow_redirects=False)
    assert wrong.status_code == 400


def test_worklist_action_without_csrf_changes_nothing(signed_in: Any, web_env: Any) -> None:
    web = signed_in("clinician")
    items = web.get("/api/v1/worklist", headers=web_env.headers("clinician")).json()
    item = items[-1]
    response = web.post(
        f"/web/worklist/{item['id']}/escalate", data={"note": "x"}, follow_redirects=False
    )
    assert response.status_code == 400
    after = web.get("/api/v1/worklist", headers=web_env.headers("clinician")).json()
    assert {i["id"]: i["state"] for i in after}[item["id"]] == item["state"]


def test_sign_out_clears_the_session(signed_in: Any) -> None:
    web = signed_in("clinician")
    token = csrf_of(web.get("/web/worklist").text)
    out = web.post("/web/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    web.cookies.clear()  # httpx keeps an expired cookie until told; the browser drops it
    again = web.get("/web/worklist", headers=HTML, follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/web/sign-in?next=%2Fweb%2Fworklist")


def test_a_cookie_saved_before_sign_out_opens_nothing_after_it(signed_in: Any) -> None:
    # Issue 12, finding 8: the cookie used to be the whole session, so a copy kept working for
    # its eight hours after sign-out. Now sign-out ends the session on the server.
    web = signed_in("clinician")
    saved = web.cookies.get("triage_session")
    token = csrf_of(web.get("/web/worklist").text)
    out = web.post("/web/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    web.cookies.clear()
    web.cookies.set("triage_session", saved, domain="testserver.local", path="/web")
    replay = web.get("/web/worklist", headers=HTML, follow_redirects=False)
    assert replay.status_code == 303, "a saved cookie still opened the worklist after sign-out"
    assert replay.headers["location"].startswith("/web/sign-in?next=%2Fweb%2Fworklist")
    assert "Max-Age=0" in replay.headers.get("set-cookie", "")  # the stale cookie is cleared


def test_signing_out_one_session_leaves_another_open(signed_in: Any, web: Any) -> None:
    first = signed_in("clinician")
    kept = first.cookies.get("triage_session")
    second = signed_in("clinician")  # a second browser: a session of its own
    token = csrf_of(second.get("/web/worklist").text)
    second.post("/web/sign-out", data={"csrf_token": token}, follow_redirects=False)
    web.cookies.clear()
    web.cookies.set("triage_session", kept, domain="testserver.local", path="/web")
    assert web.get("/web/worklist", headers=HTML, follow_redirects=False).status_code == 200


def test_tampered_session_cookie_is_ignored(signed_in: Any) -> None:
    web = signed_in("clinician")
    value = web.cookies.get("triage_session")
    web.cookies.clear()
    web.cookies.set("triage_session", value[:-3] + "abc", domain="testserver.local", path="/web")
    assert web.get("/web/worklist", headers=HTML, follow_redirects=False).status_code == 303


def test_programs_get_401_not_a_redirect(web: Any) -> None:
    response = web.get("/web/worklist", follow_redirects=False)
    assert response.status_code == 401 and "WWW-Authenticate" in response.headers


def test_next_parameter_cannot_redirect_off_site(web: Any) -> None:
    start = web.get("/web/sign-in/start?next=//evil.example/web", follow_redirects=False)
    picker = web.get(start.headers["location"])
    fields = form_fields(picker.text, "/web/dev-issuer/authorize")
    fields["role"] = "clinician"
    issued = web.post("/web/dev-issuer/authorize", data=fields, follow_redirects=False)
    back = web.get(issued.headers["location"], follow_redirects=False)
    assert back.headers["location"] == "/web/worklist"


def test_pages_follow_the_route_role_table(signed_in: Any, web_env: Any) -> None:
    patient = web_env.ids["red"]
    expected = {
        "clinician": {
            "/web/worklist": 200,
            f"/web/patients/{patient}": 200,
            "/web/pathways/copd": 200,
            "/web/models": 403,
            "/web/audit": 403,
            "/web/monitoring": 403,
        },
        "ml-engineer": {
            "/web/worklist": 403,
            f"/web/patients/{patient}": 403,
            "/web/models": 200,
            "/web/monitoring": 200,
            "/web/audit": 403,
        },
        "compliance": {
            "/web/worklist": 403,
            f"/web/patients/{patient}": 403,
            "/web/monitoring": 200,
            "/web/audit": 200,
            "/web/models": 200,
        },
    }
    for role, pages in expected.items():
        web = signed_in(role)
        for path, status in pages.items():
            response = web.get(path, headers=HTML)
            assert response.status_code == status, (role, path, response.status_code)
            if status == 403:
                assert "<h1>" in response.text and "text/html" in response.headers["content-type"]


def test_nav_shows_only_allowed_pages(signed_in: Any) -> None:
    html = signed_in("ml-engineer").get("/web/models").text
    nav = re.search(r"<nav aria-label=\"[^\"]+\">(.*?)</nav>", html, re.S).group(1)
    assert "/web/models" in nav and "/web/worklist" not in nav and "/web/audit" not in nav


def test_clinician_scoped_to_a_unit_cannot_open_another_units_patient(
    signed_in: Any, web_env: Any
) -> None:
    web = signed_in("clinician", units="heart")
    assert web.get(f"/web/patients/{web_env.ids['red']}").status_code == 404
    assert "Ingen pasienter trenger oppfølging" in web.get("/web/worklist").text


def test_the_bare_address_leads_to_the_pages(web: Any) -> None:
    root = web.get("/", headers=HTML, follow_redirects=False)
    assert root.status_code == 303 and root.headers["location"] == "/web"
    home = web.get("/web", headers=HTML, follow_redirects=False)
    assert home.headers["location"] == "/web/sign-in"
