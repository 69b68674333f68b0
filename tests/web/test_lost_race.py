"""Two clinicians act on one item (perhaps through different replicas): the one who loses the race
is told who was first, in the page's language, instead of seeing an error or a silent overwrite."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import csrf_of

SAID = {
    "nb": "Noen andre har nettopp kvittert denne saken: hpr-first.",
    "nn": "Nokon andre har nett no kvittert denne saka: hpr-first.",
    "en": "Someone else just acknowledged this: hpr-first.",
}


@pytest.mark.parametrize("lang", ["nb", "nn", "en"])
def test_the_page_says_someone_else_just_acknowledged_this_and_who(
    signed_in: Any, web_env: Any, lang: str
) -> None:
    web = signed_in("clinician", subject="hpr-second")
    web.cookies.set("lang", lang)
    api = web_env.headers("clinician")
    items = web.get("/api/v1/worklist", headers=api).json()
    item = next(i for i in items if i["state"] in ("open", "escalated"))
    page = web.get("/web/worklist?view=cards", headers={"Accept-Language": lang}).text
    assert f'name="version" value="{item["version"]}"' in page  # the page carries what it showed
    # Another clinician acknowledges first, through the API.
    first = web.post(
        f"/api/v1/worklist/{item['id']}/acknowledge",
        headers=web_env.headers("clinician", subject="hpr-first"),
    )
    assert first.status_code == 200
    answer = web.post(
        f"/web/worklist/{item['id']}/acknowledge",
        data={
            "csrf_token": csrf_of(page),
            "back": "/web/worklist",
            "version": str(item["version"]),
        },
        headers={"Accept-Language": lang},
    )
    assert answer.status_code == 200
    assert SAID[lang] in answer.text
    # Put it back for the other tests of the module (one seeded app per module).
    web.post(
        f"/api/v1/worklist/{item['id']}/escalate", json={"recipient": "unit:lungs"}, headers=api
    )
