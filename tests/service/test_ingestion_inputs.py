"""Issue 12, finding 9: times that are not FHIR dateTimes or not plausible are refused, and a retry
that writes a number differently (91.0 for 91) is the same resource."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from service.db.tables import IngestedResource
from service.fhir.parse import content_hash
from tests.helpers import enrol, observation, post_fhir

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00Z",  # a device clock at its zero
        "1900-01-01T00:00:00+00:00",  # a device clock at its reset default
        "1999-12-31T23:59:59Z",
        "20261203T110000Z",  # ISO 8601 basic form: not FHIR
        "2026-12-03 11:00:00Z",  # a space for the T: not FHIR
        "2026-12-03T11:00Z",  # FHIR needs the seconds
        "2026-12-03T11:00:00+0100",  # the zone needs its colon
    ],
)
def test_implausible_or_non_fhir_effective_times_are_refused(client, auth, value):
    patient = enrol(client, auth("clinician"))
    obs = observation(patient["id"], "spo2", 93, NOW, "time-1")
    obs["effectiveDateTime"] = value
    response = post_fhir(client, "/fhir/Observation", obs, auth("integration"))
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["Observation.effectiveDateTime"]
    with client.app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(IngestedResource)) == 0


def test_fhir_forms_of_the_same_time_are_accepted(client, auth):
    patient = enrol(client, auth("clinician"))
    integration = auth("integration")
    for i, value in enumerate(
        [
            NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
            NOW.astimezone(UTC).isoformat(),
            NOW.strftime("%Y-%m-%dT%H:%M:%S.123Z"),
        ]
    ):
        obs = observation(patient["id"], "spo2", 93, NOW, f"forms-{i}")
        obs["effectiveDateTime"] = value
        response = post_fhir(client, "/fhir/Observation", obs, integration)
        assert response.status_code == 201, response.text


def test_a_retry_that_writes_91_as_91_0_is_the_same_resource(client, auth):
    patient = enrol(client, auth("clinician"))
    integration = auth("integration")
    first = observation(patient["id"], "spo2", 91, NOW, "retry-91")
    created = post_fhir(client, "/fhir/Observation", first, integration)
    assert created.status_code == 201, created.text
    retry = observation(patient["id"], "spo2", 91.0, NOW, "retry-91")
    again = post_fhir(client, "/fhir/Observation", retry, integration)
    assert again.status_code == 200, again.text  # was 409: the hash saw "91" and "91.0"
    assert again.json()["id"] == created.json()["id"]
    # A different value is still a conflict.
    other = observation(patient["id"], "spo2", 91.5, NOW, "retry-91")
    assert post_fhir(client, "/fhir/Observation", other, integration).status_code == 409


def test_content_hash_canonicalises_numbers_only_where_values_are_equal():
    assert content_hash({"v": 91, "w": [1.0, {"x": 2}]}) == content_hash(
        {"w": [1, {"x": 2.0}], "v": 91.0}
    )
    assert content_hash({"v": 91}) != content_hash({"v": 91.5})
    assert content_hash({"v": 91}) != content_hash({"v": "91"})
