"""docs/information-model.md is generated from the code (service/information_model.py): a change
to a measurement, feature, questionnaire or FHIR builder without regenerating it fails here."""

from __future__ import annotations

from service.information_model import DOC_PATH, render


def test_information_model_document_is_in_sync() -> None:
    expected = render()
    actual = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
    assert actual == expected, (
        "docs/information-model.md is out of date: run `.venv/bin/python -m service.information_model`"
    )


def test_information_model_names_every_measurement_feature_and_questionnaire() -> None:
    from models.features import FEATURE_NAMES
    from models.measurements import MEASUREMENTS
    from models.questionnaires import QUESTIONNAIRE_IDS

    document = render()
    for name in (*MEASUREMENTS, *QUESTIONNAIRE_IDS):
        assert f"| {name} |" in document or f"### {name} " in document, name
    for feature in FEATURE_NAMES:
        assert f"`{feature}`" in document, feature
    for rtype in ("RiskAssessment", "Task", "DetectedIssue", "Patient", "PlanDefinition"):
        assert f"### {rtype} (" in document, rtype
    assert "```mermaid" in document
