"""Issue 13, "refused, though valid": what the national profiles allow is accepted.

Blood-pressure panels with extra components, UCUM-equivalent units, a felles hjelpenummer as
subject, a meta- or narrative-only resend, corrected/amended versions and entered-in-error.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from tests.helpers import enrol, observation, post_fhir
from tests.service.interop.conftest import NOW
from tests.service.interop.test_vkp_examples import for_patient, published, stored_readings

_K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def felles_hjelpenummer(body: str) -> str:
    """Nine digits starting with 8 or 9, completed with the two classic mod-11 check digits."""
    digits = [int(c) for c in body]
    k1 = 11 - sum(d * w for d, w in zip(digits, _K1, strict=True)) % 11
    k1 = 0 if k1 == 11 else k1
    assert k1 != 10
    digits.append(k1)
    k2 = 11 - sum(d * w for d, w in zip(digits, _K2, strict=True)) % 11
    k2 = 0 if k2 == 11 else k2
    assert k2 != 10
    return body + str(k1) + str(k2)


def assessments(client: Any, headers: dict[str, str], pid: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/patients/{pid}/assessments", headers=headers)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def test_blood_pressure_panel_keeps_systolic_diastolic_and_stores_map_and_pulse_pressure(
    app: Any, client: Any, auth: Any
) -> None:
    pid = enrol(client, auth("clinician"))["id"]
    bp = for_patient(published("Observation-vkp-blood-pressure-create.json"), pid)
    response = post_fhir(client, "/fhir/Observation", bp, auth("integration"))
    assert response.status_code == 201, response.text
    assert stored_readings(app, response.json()["id"]) == {
        "systolic_bp": 123,
        "diastolic_bp": 78,
        "mean_arterial_pressure": 93,
        "pulse_pressure": 45,
    }


def test_blood_pressure_panel_without_systolic_or_diastolic_is_refused(
    client: Any, auth: Any
) -> None:
    pid = enrol(client, auth("clinician"))["id"]
    bp = for_patient(published("Observation-vkp-blood-pressure-create.json"), pid)
    bp["component"] = bp["component"][2:]  # only MAP and pulse pressure
    response = post_fhir(client, "/fhir/Observation", bp, auth("integration"))
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Observation.component"]


@pytest.mark.parametrize(
    ("unit", "value", "expected"),
    [("mmol/l", 6.3, 6.3), ("mmol/L", 6.3, 6.3), ("mg/dl", 180.0, 9.99)],
)
def test_ucum_litre_is_case_insensitive(
    unit: str, value: float, expected: float, app: Any, client: Any, auth: Any
) -> None:
    pid = enrol(client, auth("clinician"))["id"]
    glucose = for_patient(published("Observation-vkp-glucose-create.json"), pid)
    glucose["valueQuantity"].update({"value": value, "code": unit, "unit": unit})
    response = post_fhir(client, "/fhir/Observation", glucose, auth("integration"))
    assert response.status_code == 201, response.text
    assert stored_readings(app, response.json()["id"])["glucose"] == pytest.approx(expected, 0.01)


def test_ucum_normalise_only_touches_the_litre() -> None:
    from models.measurements import ucum_normalise

    assert ucum_normalise("mmol/l") == ucum_normalise("mmol/L") == "mmol/L"
    assert ucum_normalise("mg/dl") == "mg/dL"
    assert ucum_normalise("ml/min") == "mL/min"
    # Case matters everywhere else in UCUM: these stay as they are (and stay refused).
    assert ucum_normalise("MMOL/L") == "MMOL/L"
    assert ucum_normalise("Cel") == "Cel" and ucum_normalise("mm[Hg]") == "mm[Hg]"


def test_felles_hjelpenummer_subject_resolves_to_the_patient_enrolled_with_it(
    client: Any, auth: Any
) -> None:
    fhn = felles_hjelpenummer("812345678")
    pid = enrol(client, auth("clinician"), identifier=fhn)["id"]
    obs = observation(pid, "heart_rate", 70, NOW - timedelta(hours=1), "fhn-1")
    obs["subject"] = {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.3", "value": fhn}}
    response = post_fhir(client, "/fhir/Observation", obs, auth("integration"))
    assert response.status_code == 201, response.text
    rows = assessments(client, auth("clinician"), pid)
    assert rows and response.json()["id"] in rows[0]["basis"]
    # The same number under the fødselsnummer system is not that patient.
    obs["identifier"][0]["value"] = "fhn-2"
    obs["subject"]["identifier"]["system"] = "urn:oid:2.16.578.1.12.4.1.4.1"
    refused = post_fhir(client, "/fhir/Observation", obs, auth("integration"))
    assert refused.status_code == 422
    assert fhn not in refused.text


def test_unenrolled_felles_hjelpenummer_is_refused_without_echoing_it(
    client: Any, auth: Any
) -> None:
    fhn = felles_hjelpenummer("912345670")
    obs = observation("x", "heart_rate", 70, NOW - timedelta(hours=1), "fhn-3")
    obs["subject"] = {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.3", "value": fhn}}
    response = post_fhir(client, "/fhir/Observation", obs, auth("integration"))
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Observation.subject"]
    assert fhn not in response.text


def test_meta_or_narrative_only_difference_is_the_same_resource(client: Any, auth: Any) -> None:
    pid = enrol(client, auth("clinician"))["id"]
    first = for_patient(published("Observation-body-weight-create.json"), pid)
    created = post_fhir(client, "/fhir/Observation", first, auth("integration"))
    assert created.status_code == 201, created.text
    resend = copy.deepcopy(first)
    resend["meta"] = {"versionId": "7", "lastUpdated": "2022-01-01T00:00:00Z", "source": "x"}
    resend["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
    }
    again = post_fhir(client, "/fhir/Observation", resend, auth("integration"))
    assert again.status_code == 200, again.text
    assert again.json()["id"] == created.json()["id"]
    # A changed value with status final is still a conflict: it must say it corrects.
    resend["valueQuantity"]["value"] = 51000
    conflict = post_fhir(client, "/fhir/Observation", resend, auth("integration"))
    assert conflict.status_code == 409
    assert conflict.json()["issue"][0]["expression"] == ["Observation.identifier"]


@pytest.mark.parametrize("status", ["corrected", "amended"])
def test_corrected_replaces_the_value_as_a_new_version_and_supersedes_the_assessment(
    status: str, app: Any, client: Any, auth: Any
) -> None:
    pid = enrol(client, auth("clinician"))["id"]
    original = observation(pid, "spo2", 84, NOW - timedelta(hours=1), "corr-1")
    created = post_fhir(client, "/fhir/Observation", original, auth("integration"))
    assert created.status_code == 201
    rid = created.json()["id"]
    before = assessments(client, auth("clinician"), pid)
    assert len(before) == 1
    corrected = copy.deepcopy(original)
    corrected["status"] = status
    corrected["valueQuantity"]["value"] = 97
    response = post_fhir(client, "/fhir/Observation", corrected, auth("integration"))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == rid
    assert response.json()["meta"]["versionId"] == "2"
    assert stored_readings(app, rid) == {"spo2": 97}
    after = assessments(client, auth("clinician"), pid)
    assert len(after) == 2  # the earlier assessment is kept, never deleted
    newest, earlier = after
    assert earlier["id"] == before[0]["id"]
    assert newest["supersedes_id"] == earlier["id"]
    assert earlier["superseded_by"] == newest["id"]
    # Re-scored on 97 % (NEWS2 SpO2 0, green), not on 84 % (NEWS2 SpO2 3, red).
    assert (earlier["level"], newest["level"]) == ("red", "green")
    # Sending the correction again is a retry of version 2.
    again = post_fhir(client, "/fhir/Observation", corrected, auth("integration"))
    assert again.status_code == 200 and again.json()["meta"]["versionId"] == "2"
    assert len(assessments(client, auth("clinician"), pid)) == 2


def test_entered_in_error_withdraws_the_reading_and_rescores(
    app: Any, client: Any, auth: Any
) -> None:
    pid = enrol(client, auth("clinician"))["id"]
    integration = auth("integration")
    good = observation(pid, "spo2", 96, NOW - timedelta(hours=2), "eie-1")
    wrong = observation(pid, "spo2", 80, NOW - timedelta(hours=1), "eie-2")
    assert post_fhir(client, "/fhir/Observation", good, integration).status_code == 201
    created = post_fhir(client, "/fhir/Observation", wrong, integration)
    assert created.status_code == 201
    low = assessments(client, auth("clinician"), pid)[0]
    withdrawn = copy.deepcopy(wrong)
    withdrawn["status"] = "entered-in-error"
    response = post_fhir(client, "/fhir/Observation", withdrawn, integration)
    assert response.status_code == 200, response.text
    assert stored_readings(app, created.json()["id"]) == {}
    newest = assessments(client, auth("clinician"), pid)[0]
    assert newest["supersedes_id"] == low["id"]
    assert created.json()["id"] not in newest["basis"]
    # SpO2 80 % scores NEWS2 3 (red); without it the patient is back to the 96 % reading.
    assert (low["level"], newest["level"]) == ("red", "green")
    # A withdrawn resource cannot be revived by a correction.
    revived = copy.deepcopy(wrong)
    revived["status"] = "corrected"
    assert post_fhir(client, "/fhir/Observation", revived, integration).status_code == 409


def test_entered_in_error_for_something_never_received_is_refused(client: Any, auth: Any) -> None:
    pid = enrol(client, auth("clinician"))["id"]
    obs = observation(pid, "spo2", 96, NOW - timedelta(hours=1), "never-sent")
    obs["status"] = "entered-in-error"
    response = post_fhir(client, "/fhir/Observation", obs, auth("integration"))
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Observation.identifier"]
