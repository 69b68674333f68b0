"""docs/interop-examples.md: every marked example is run against the service and answers the
status the page says (`<!-- example: METHOD PATH STATUS [strict] -->`, followed by its JSON body
for a POST). $FNR, $PID and $WHEN stand for an enrolled patient and a recent time."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.helpers import enrol, post_fhir

DOC = Path(__file__).parents[3] / "docs" / "interop-examples.md"
MARK = re.compile(r"<!-- example: (GET|POST) (\S+) (\d{3})( strict)? -->")
FNR = "15076500565"


def examples() -> list[tuple[str, str, int, bool, str | None]]:
    text = DOC.read_text(encoding="utf-8")
    out = []
    for match in MARK.finditer(text):
        body = None
        if match[1] == "POST":
            rest = text[match.end() :]
            block = re.match(r"\s*```json\n(.*?)\n```", rest, re.S)
            assert block, f"{match[0]} is not followed by its JSON body"
            body = block[1]
        out.append((match[1], match[2], int(match[3]), bool(match[4]), body))
    return out


def test_the_page_marks_examples_for_vkp_helsenorge_and_dips() -> None:
    found = examples()
    paths = {path.split("?")[0] for _, path, _, _, _ in found}
    assert {"/fhir/Observation", "/fhir", "/fhir/QuestionnaireResponse"} <= paths  # VKP, Helsenorge
    assert {"/fhir/RiskAssessment", "/fhir/Task", "/fhir/DetectedIssue"} <= paths  # DIPS


def test_every_example_answers_as_documented(client: Any, auth: Any) -> None:
    pid = enrol(client, auth("clinician"), identifier=FNR)["id"]
    when = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()

    def fill(text: str) -> str:
        return text.replace("$FNR", FNR).replace("$PID", pid).replace("$WHEN", when)

    integration = auth("integration")
    for method, path, status, strict, body in examples():
        if method == "POST":
            assert body is not None
            response = post_fhir(client, fill(path), json.loads(fill(body)), integration)
        else:
            headers = {**integration, **({"Prefer": "handling=strict"} if strict else {})}
            response = client.get(fill(path), headers=headers)
        assert response.status_code == status, (method, path, response.text[:500])
