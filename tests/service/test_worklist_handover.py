"""Handover: what people did with an item is kept and shown, a red is resolved only with a note,
an escalation reaches its named recipient, and acknowledged items sort below open ones."""

from __future__ import annotations

import pytest

from tests.helpers import enrol
from tests.service.test_scoring_and_worklist import OTHER_FNR
from tests.service.test_worklist_safety import feed_stable_then


@pytest.fixture
def settings(make_settings, any_database_url):
    return make_settings(database_url=any_database_url)


def items_of(client, headers, **params) -> list[dict]:
    response = client.get("/api/v1/worklist", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_red_is_resolved_only_with_a_note_and_the_history_says_who_did_what(client, auth):
    nurse = auth("clinician", subject="hpr-9144889")
    pid = enrol(client, nurse)["id"]
    feed_stable_then(client, auth("integration"), pid, 84)
    [item] = items_of(client, nurse)
    assert item["level"] == "red" and item["history"] == []
    bare = client.post(f"/api/v1/worklist/{item['id']}/resolve", headers=nurse)
    assert bare.status_code == 422 and bare.json()["location"] == "note", bare.text
    blank = client.post(
        f"/api/v1/worklist/{item['id']}/resolve", json={"note": "   "}, headers=nurse
    )
    assert blank.status_code == 422
    assert items_of(client, nurse)[0]["state"] == "open"  # nothing changed
    client.post(
        f"/api/v1/worklist/{item['id']}/acknowledge", json={"note": "ringer nå"}, headers=nurse
    )
    done = client.post(
        f"/api/v1/worklist/{item['id']}/resolve",
        json={"note": "Lege tilså, antibiotika startet"},
        headers=nurse,
    )
    assert done.status_code == 200, done.text
    history = done.json()["history"]
    assert [(e["action"], e["actor"], e["note"]) for e in history] == [
        ("acknowledge", "hpr-9144889", "ringer nå"),
        ("resolve", "hpr-9144889", "Lege tilså, antibiotika startet"),
    ]
    assert all(e["at"] for e in history)


def test_escalation_names_a_recipient_who_sees_it_in_their_own_list(client, auth):
    nurse = auth("clinician", units=["lungs"], subject="hpr-9144889")
    pid = enrol(client, nurse)["id"]
    enrol(client, auth("clinician"), identifier=OTHER_FNR, birth_date="1970-01-01", unit="heart")
    feed_stable_then(client, auth("integration"), pid, 84)
    [item] = items_of(client, nurse)
    url = f"/api/v1/worklist/{item['id']}/escalate"
    for body, status in (
        ({}, 422),
        ({"recipient": "the doctor"}, 422),
        ({"recipient": "hpr:12345678901"}, 422),  # not an HPR number (and not stored)
        ({"recipient": "unit:nowhere"}, 422),
        ({"recipient": "role:compliance"}, 422),
    ):
        response = client.post(url, json=body, headers=nurse)
        assert response.status_code == status and response.json()["location"] == "recipient"
    doctor = auth("clinician", units=["heart"], subject="hpr-565656")
    assert items_of(client, doctor) == []
    assert items_of(client, doctor, for_me="true") == []
    sent = client.post(
        url, json={"recipient": "hpr:565656", "note": "Vurder innleggelse"}, headers=nurse
    )
    assert sent.status_code == 200 and sent.json()["escalated_to"] == "hpr:565656"
    # The doctor, in another unit, sees it in her own list and can act on it.
    [mine] = items_of(client, doctor, for_me="true")
    assert mine["id"] == item["id"] and mine["history"][-1]["recipient"] == "hpr:565656"
    other = auth("clinician", units=["heart"], subject="hpr-777777")
    assert items_of(client, other, for_me="true") == []
    ack = client.post(f"/api/v1/worklist/{item['id']}/acknowledge", headers=doctor)
    assert ack.status_code == 200 and ack.json()["acknowledged_by"] == "hpr-565656"
    # A unit as recipient: everyone of that unit sees it.
    again = client.post(url, json={"recipient": "unit:heart"}, headers=nurse)
    assert again.status_code == 200
    assert [i["id"] for i in items_of(client, other, for_me="true")] == [item["id"]]


def test_acknowledged_items_sort_below_open_items_of_the_same_level(client, auth):
    nurse = auth("clinician")
    integration = auth("integration")
    first = enrol(client, nurse)["id"]
    second = enrol(client, nurse, identifier=OTHER_FNR, birth_date="1970-01-01")["id"]
    feed_stable_then(client, integration, first, 84, prefix="a")
    feed_stable_then(client, integration, second, 85, prefix="b")
    before = items_of(client, nurse)
    assert {i["level"] for i in before} == {"red"}
    top = before[0]
    client.post(f"/api/v1/worklist/{top['id']}/acknowledge", headers=nurse)
    after = items_of(client, nurse)
    assert [i["id"] for i in after] == [before[1]["id"], top["id"]]
    assert [i["state"] for i in after] == ["open", "acknowledged"]


def test_a_display_name_is_shown_to_those_who_may_see_the_patient_and_never_logged(
    client, auth, caplog
):
    import logging

    caplog.set_level(logging.DEBUG)
    clinician = auth("clinician")
    patient = enrol(client, clinician, display_name="Ingrid  Testesen")
    assert patient["display_name"] == "Ingrid Testesen"
    feed_stable_then(client, auth("integration"), patient["id"], 84)
    [item] = items_of(client, clinician)
    assert item["patient"]["display_name"] == "Ingrid Testesen"
    assert item["patient"]["display_identifier"].endswith("*****")
    again = client.post(
        "/api/v1/patients",
        json={
            "identifier": "15076500565",
            "birth_date": "1965-07-15",
            "sex": "female",
            "pathway": "copd",
            "organisation": "983974899",
            "unit": "lungs",
            "display_name": "Ingrid Testesen",
        },
        headers=clinician,
    )
    assert again.status_code in (200, 409)  # a sender's retry
    numbered = client.post(
        "/api/v1/patients",
        json={
            "identifier": OTHER_FNR,
            "birth_date": "1970-01-01",
            "sex": "female",
            "pathway": "copd",
            "organisation": "983974899",
            "unit": "lungs",
            "display_name": f"Ola {OTHER_FNR}",
        },
        headers=clinician,
    )
    assert numbered.status_code == 422 and numbered.json()["location"] == "display_name"
    assert OTHER_FNR not in numbered.text
    assert caplog.records and "Testesen" not in caplog.text
