"""Children and young people (pasient- og brukerrettighetsloven §§ 3-4, 4-3)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from service.errors import InvalidInput
from service.security.guardian import validate_guardian_flag, withheld_from_guardians
from service.security.principal import Role
from service.security.tokens import issue_dev_token
from tests.helpers import enrol, observation, post_fhir
from tests.service.security.conftest import flush_audit, make_fnr

TODAY = datetime.now(UTC).date()


def _born(years_ago: int) -> date:
    return (
        date(TODAY.year - years_ago, 1, 15)
        if date(TODAY.year, 1, 15) <= TODAY
        else date(TODAY.year - years_ago - 1, 1, 15)
    )


def _child(client: Any, auth: Any, age: int, confidential: bool, tag: str) -> dict[str, Any]:
    birth = _born(age)
    individual = 500 if birth.year >= 2000 else 100
    p = enrol(
        client,
        auth("integration"),
        make_fnr(birth, individual),
        pathway="paediatric",
        unit="barn",
        birth_date=birth.isoformat(),
        confidential_to_guardians=confidential,
    )
    r = post_fhir(
        client,
        "/fhir/Observation",
        observation(p["id"], "heart_rate", 160, datetime.now(UTC), f"g-{tag}"),
        auth("integration"),
    )
    assert r.status_code == 201, r.text
    return p


@pytest.fixture
def guardian(settings: Any) -> dict[str, str]:
    token = issue_dev_token(
        settings, Role.INTEGRATION, subject="helsenorge", representation="guardian"
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("age, ok", [(11, False), (12, True), (15, True), (16, False), (17, False)])
def test_flag_is_for_ages_12_to_15(age: int, ok: bool) -> None:
    if ok:
        validate_guardian_flag(_born(age), True, TODAY)
    else:
        with pytest.raises(InvalidInput, match="12 to 15"):
            validate_guardian_flag(_born(age), True, TODAY)
    validate_guardian_flag(_born(age), False, TODAY)  # not asking is always fine


def test_enrolment_refuses_the_flag_outside_the_age_band(client: Any, auth: Any) -> None:
    birth = _born(9)
    body = {
        "identifier": make_fnr(birth, 500),
        "birth_date": birth.isoformat(),
        "sex": "male",
        "pathway": "paediatric",
        "organisation": "983974899",
        "unit": "barn",
        "confidential_to_guardians": True,
    }
    response = client.post("/api/v1/patients", json=body, headers=auth("integration"))
    assert response.status_code == 422
    assert response.json()["location"] == "confidential_to_guardians"


def test_guardian_is_refused_for_a_flagged_teenager(
    client: Any, auth: Any, guardian: dict[str, str]
) -> None:
    teen = _child(client, auth, 14, True, "t")
    for path in (
        f"/fhir/RiskAssessment?subject=Patient/{teen['id']}",
        f"/fhir/Task?patient=Patient/{teen['id']}",
        f"/fhir/DetectedIssue?patient=Patient/{teen['id']}",
    ):
        response = client.get(path, headers=guardian)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"


def test_guardian_is_refused_from_16(client: Any, auth: Any, guardian: dict[str, str]) -> None:
    older = _child(client, auth, 17, False, "o")
    response = client.get(f"/fhir/RiskAssessment?subject=Patient/{older['id']}", headers=guardian)
    assert response.status_code == 403


def test_guardian_may_read_a_young_childs_outputs(
    client: Any, auth: Any, guardian: dict[str, str]
) -> None:
    young = _child(client, auth, 8, False, "y")
    response = client.get(f"/fhir/RiskAssessment?subject=Patient/{young['id']}", headers=guardian)
    assert response.status_code == 200 and response.json()["total"] >= 1
    flush_audit(client)
    rows = client.get(
        "/api/v1/audit",
        params={"patient": young["id"], "user": "helsenorge"},
        headers=auth("compliance"),
    ).json()["entries"]
    assert rows and rows[-1]["purpose"].endswith(":guardian-proxy")


def test_guardian_must_name_exactly_one_patient(client: Any, guardian: dict[str, str]) -> None:
    assert client.get("/fhir/Task", headers=guardian).status_code == 403
    assert (
        client.get("/fhir/Task?patient=Patient/a&patient=Patient/b", headers=guardian).status_code
        == 403
    )


def test_flagged_outputs_carry_restricted_confidentiality(client: Any, auth: Any) -> None:
    teen = _child(client, auth, 13, True, "c")
    bundle = client.get(
        f"/fhir/RiskAssessment?subject=Patient/{teen['id']}", headers=auth("clinician")
    ).json()
    security = bundle["entry"][0]["resource"]["meta"]["security"]
    assert {"code": "R"}.items() <= security[0].items()


def test_withheld_rule() -> None:
    class P:
        def __init__(self, age: int, flag: bool) -> None:
            self.birth_date, self.confidential_to_guardians = _born(age), flag

    assert withheld_from_guardians(P(14, True))
    assert not withheld_from_guardians(P(14, False))
    assert withheld_from_guardians(P(16, False))
    assert not withheld_from_guardians(P(5, False))
