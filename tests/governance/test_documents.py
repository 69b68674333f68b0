"""Governance documents and code cannot drift apart: every control a document names must exist.

A route (`GET /api/v1/audit`) must be in the app's OpenAPI with that method; a file or folder
(`service/security/audit.py`) must exist; a test (`tests/...py::test_name`) must exist and define
that test; a relative Markdown link must resolve. The AI Act mapping must cover each article
with a control and a test, and the risk register must name a test for every risk.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GOVERNANCE = REPO / "governance"
# The documents this test owns (model-cards/, monitoring/ and rule-language.md belong to others).
DOCUMENTS = (
    "README.md",
    "intended-use.md",
    "classification.md",
    "mdr-classification.md",
    "ai-act-mapping.md",
    "dpia.md",
    "risk-register.md",
    "human-oversight.md",
    "audit-log.md",
    "retention.md",
    "children-and-young-people.md",
    "helseid-configuration.md",
    "model-cards.md",
    "drift-review.md",
    "access-matrix.md",
    "organisation-boundaries.md",
)
AI_ACT_ARTICLES = (9, 10, 11, 12, 13, 14, 15, 17, 26, 72)

_CODE = re.compile(r"`([^`\n]+)`")
_ROUTE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S*)$")
_BARE_ROUTE = re.compile(r"^/(api|fhir|v2|cds-services)\S*$")
_TEST = re.compile(r"^(tests/[\w/.-]+\.py)::(\w+)$")
_FILE = re.compile(r"^(service|models|training|monitoring|tests|bench|governance)(/[\w.-]+)*/?$")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _openapi(tmp_path: Path) -> dict[str, Any]:
    from service.app import create_app
    from service.config import Settings

    return create_app(Settings(var_dir=tmp_path, environment="test")).openapi()


def _text(name: str) -> str:
    return (GOVERNANCE / name).read_text(encoding="utf-8")


def _problems(name: str, text: str, paths: dict[str, Any]) -> list[str]:
    problems = []
    for span in _CODE.findall(text):
        span = span.strip()
        if route := _ROUTE.match(span):
            method, path = route.group(1).lower(), route.group(2).split("?")[0]
            if method not in paths.get(path, {}):
                problems.append(f"{name}: route `{span}` is not in the OpenAPI")
        elif _BARE_ROUTE.match(span):
            if span.split("?")[0] not in paths:
                problems.append(f"{name}: path `{span}` is not in the OpenAPI")
        elif test := _TEST.match(span):
            file = REPO / test.group(1)
            if not file.is_file():
                problems.append(f"{name}: test file {test.group(1)} does not exist")
            elif not re.search(rf"^\s*def {test.group(2)}\(", file.read_text(), re.MULTILINE):
                problems.append(f"{name}: {test.group(1)} has no test {test.group(2)}")
        elif _FILE.match(span) and not (REPO / span).exists():
            problems.append(f"{name}: `{span}` does not exist")
    for target in _LINK.findall(text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        if not (GOVERNANCE / target.split("#")[0]).exists():
            problems.append(f"{name}: link ({target}) does not resolve")
    return problems


def test_every_governance_document_exists() -> None:
    missing = [d for d in DOCUMENTS if not (GOVERNANCE / d).is_file()]
    assert not missing, missing


def test_every_referenced_control_exists(tmp_path: Path) -> None:
    paths = _openapi(tmp_path)["paths"]
    # access-matrix.md is generated from the routes themselves (and checked by its own test).
    problems = [
        p for d in DOCUMENTS if d != "access-matrix.md" for p in _problems(d, _text(d), paths)
    ]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_drift(tmp_path: Path) -> None:
    """The checks above can fail: a made-up route, file, test and link are each reported."""
    paths = _openapi(tmp_path)["paths"]
    text = (
        "`GET /api/v1/no-such-route` `DELETE /api/v1/audit` `service/security/gone.py` "
        "`tests/service/security/test_audit.py::test_that_does_not_exist` [x](nowhere.md)"
    )
    assert len(_problems("probe", text, paths)) == 5


def test_ai_act_mapping_covers_each_article_with_a_control_and_a_test() -> None:
    text = _text("ai-act-mapping.md")
    for article in AI_ACT_ARTICLES:
        rows = [line for line in text.splitlines() if line.startswith(f"| Art. {article} |")]
        assert len(rows) == 1, f"Art. {article} needs exactly one row"
        spans = _CODE.findall(rows[0])
        assert any(_TEST.match(s) for s in spans), f"Art. {article}: no test named"
        assert any(_FILE.match(s) or _ROUTE.match(s) for s in spans), (
            f"Art. {article}: no control (file or endpoint) named"
        )


def test_every_risk_names_a_control_and_a_test() -> None:
    rows = [
        line for line in _text("risk-register.md").splitlines() if re.match(r"^\| R\d+ \|", line)
    ]
    assert len(rows) >= 10
    for row in rows:
        spans = _CODE.findall(row)
        assert any(_TEST.match(s) for s in spans), f"no test in: {row[:60]}"


@pytest.mark.parametrize(
    "document, terms",
    [
        (
            "classification.md",
            [
                "behandlingsrettet helseregister",
                "§ 2",
                "§ 9",
                "kommunikasjonsløsning",
                "dataansvarlig",
                "databehandler",
                "§ 22",
                "§ 18",
            ],
        ),
        (
            "mdr-classification.md",
            ["Rule 11", "IIa", "IIb", "vital physiological parameters", "intended purpose"],
        ),
        ("dpia.md", ["Art. 9(2)(h)", "Art. 35", "legal basis"]),
        ("children-and-young-people.md", ["§ 3-4", "§ 4-3", "16", "meta.security"]),
        ("human-oversight.md", ["never acts alone", "acknowledge"]),
        ("retention.md", ["pasientjournalforskriften § 15", "six months"]),
        ("README.md", ["model-cards.md", "drift-review.md", "intended-use.md"]),
        (
            "organisation-boundaries.md",
            ["service/security/visibility.py", "grant", "transfer", "legal basis", "orgnr_parent"],
        ),
    ],
)
def test_documents_say_what_they_must(document: str, terms: list[str]) -> None:
    text = _text(document)
    assert not [t for t in terms if t not in text], f"{document} lacks some of {terms}"


def test_model_card_index_and_drift_procedure_link_the_owned_folders() -> None:
    assert "model-cards/README.md" in _text("model-cards.md")
    assert "monitoring/README.md" in _text("drift-review.md")
