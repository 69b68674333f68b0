"""Test helpers: a hand-made artifact and FHIR payload builders shaped like VKP messages."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.additive import StepFunctionModel
from models.artifact import Manifest
from models.features import FEATURE_NAMES, FEATURES, N_FEATURES, feature_spec_hash

ORG = "983974899"
# Valid synthetic fødselsnumre (both check digits correct under the classic rule).
FNR_ADULT = "15076500565"
VKP_PROFILE = "http://hl7.no/fhir/vkp/StructureDefinition/VkpObservation"


def build_handmade_artifact(dest: Path) -> Path:
    """Step functions that follow each feature's clinical direction; deterministic bytes."""
    thresholds, values = [], []
    for f in FEATURES:
        if f.kind == "delta_baseline" or f.kind.startswith("change"):
            edges = np.array([-8.0, -4.0, -2.0, 2.0, 4.0, 8.0])
        elif f.name == "missed_measurement_days_3d":
            edges = np.array([0.5, 1.5])
        else:
            edges = np.array([])
        steps = np.linspace(1.2, -1.2, len(edges) + 1) * -f.risk_direction
        thresholds.append(edges)
        values.append(steps if len(edges) else np.zeros(1))
    model = StepFunctionModel(FEATURE_NAMES, thresholds, values, np.zeros(N_FEATURES), -2.5)
    data = model.to_onnx("handmade")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model.onnx").write_bytes(data)
    Manifest(
        name="handmade-test-model",
        version="0.0.1",
        kind="additive",
        sha256=hashlib.sha256(data).hexdigest(),
        feature_spec_hash=feature_spec_hash(),
        feature_names=list(FEATURE_NAMES),
        intercept=model.intercept,
        created="2026-01-01T00:00:00Z",
        training_data={"synthetic": True, "note": "hand-set for tests"},
        extra={"operating_points": handmade_operating_points()},
    ).write(dest)
    return dest


# Hand-set thresholds for every named operating point: the shipped pathways' names resolve to
# yellow 0.2 (budget-5) and red 0.5 (budget-2) with this artifact.
HANDMADE_THRESHOLDS = {
    "budget-1": 0.6,
    "budget-2": 0.5,
    "budget-3": 0.4,
    "budget-5": 0.2,
    "sensitivity-50": 0.35,
    "sensitivity-60": 0.3,
    "sensitivity-80": 0.2,
}


def handmade_operating_points() -> dict[str, Any]:
    from models.operating_points import SPEC_BY_NAME
    from models.rules import load_shipped_pathways

    def point(name: str, threshold: float) -> dict[str, Any]:
        spec = SPEC_BY_NAME[name]
        validation = {
            "alerts_per_100_patient_days": 10.0 * (1 - threshold),
            "alerts_per_100_patient_days_ci": [8.0 * (1 - threshold), 12.0 * (1 - threshold)],
            "event_sensitivity": 1 - threshold,
            "event_sensitivity_ci": [0.9 * (1 - threshold), min(1.0, 1.1 * (1 - threshold))],
            "ppv": threshold / 2,
            "ppv_ci": [threshold / 3, threshold],
        }
        return {
            "kind": spec.kind,
            "target": spec.target,
            "description": spec.description,
            "threshold": threshold,
            "validation": validation,
        }

    points = {name: point(name, t) for name, t in HANDMADE_THRESHOLDS.items()}
    return {
        "pathways": {pw: {"points": points, "curve": []} for pw in load_shipped_pathways()},
        "note": "hand-set for tests",
    }


def enrol(
    client: Any,
    headers: dict[str, str],
    identifier: str = FNR_ADULT,
    pathway: str = "copd",
    unit: str = "lungs",
    birth_date: str = "1965-07-15",
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "identifier": identifier,
        "birth_date": birth_date,
        "sex": "female",
        "pathway": pathway,
        "organisation": ORG,
        "unit": unit,
        **extra,
    }
    response = client.post("/api/v1/patients", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


_CODES = {
    "spo2": ("2708-6", "431314004", "%", "Oxygen saturation"),
    "heart_rate": ("8867-4", "364075005", "/min", "Heart rate"),
    "respiratory_rate": ("9279-1", "86290005", "/min", "Respiratory rate"),
    "temperature": ("8310-5", "276885007", "Cel", "Body temperature"),
    "weight": ("29463-7", "27113001", "kg", "Body weight"),
}


def observation(
    patient_id: str,
    measurement: str,
    value: float,
    when: datetime,
    message_id: str,
    unit: str | None = None,
) -> dict[str, Any]:
    loinc, snomed, canonical_unit, display = _CODES[measurement]
    unit = unit or canonical_unit
    return {
        "resourceType": "Observation",
        "meta": {"profile": [VKP_PROFILE]},
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.7.1", "value": message_id}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": loinc, "display": display},
                {"system": "http://snomed.info/sct", "code": snomed},
            ]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when.astimezone(UTC).isoformat(),
        "performer": [{"display": "Pasient"}],
        "device": {"display": "Nonin 3230 pulse oximeter"},
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def blood_pressure(
    patient_id: str, systolic: float, diastolic: float, when: datetime, message_id: str
) -> dict[str, Any]:
    def component(code: str, value: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    obs = observation(patient_id, "heart_rate", 0, when, message_id)
    del obs["valueQuantity"]
    obs["code"] = {
        "coding": [
            {"system": "http://loinc.org", "code": "85354-9"},
            {"system": "http://snomed.info/sct", "code": "75367002"},
        ]
    }
    obs["component"] = [component("8480-6", systolic), component("8462-4", diastolic)]
    return obs


def post_fhir(client: Any, path: str, resource: dict[str, Any], headers: dict[str, str]) -> Any:
    return client.post(
        path,
        content=json.dumps(resource),
        headers={**headers, "Content-Type": "application/fhir+json"},
    )


def questionnaire_response(
    patient_id: str, when: datetime, message_id: str, answers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Helsenorge-style answer to the COPD symptom questionnaire."""
    answers = answers or {
        "dyspnoea": "moderate",
        "cough": "mild",
        "sputum_colour": "yellow",
        "sputum_volume": "more",
        "on_oxygen": False,
        "consciousness": "alert",
    }
    items = []
    for link, value in answers.items():
        answer = (
            {"valueBoolean": value} if isinstance(value, bool) else {"valueCoding": {"code": value}}
        )
        items.append({"linkId": link, "answer": [answer]})
    return {
        "resourceType": "QuestionnaireResponse",
        "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.7.2", "value": message_id},
        "questionnaire": "https://triage.example.org/fhir/Questionnaire/copd-symptoms|1.0.0",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authored": when.astimezone(UTC).isoformat(),
        "source": {"reference": f"Patient/{patient_id}"},
        "item": items,
    }


_TEMPLATE: dict[str, Path] = {}


def migrate_test_database(url: str) -> None:
    """Migrate a test database; a new SQLite file is a copy of one migrated template.

    Migrating costs most of an app test's setup (about a second), and every test used to pay it.
    The template is built once per test process from the same migrations, so a copy is the schema
    `triage serve` would create. PostgreSQL URLs (a schema per test) are migrated as before.
    """
    from service.db.engine import migrate

    path = Path(url.split("///", 1)[1]) if url.startswith("sqlite:///") else None
    if path is None or path.exists() or str(path) == ":memory:":
        migrate(url)
        return
    if "template" not in _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="triage-template-"))
        template = folder / "triage.db"
        migrate(f"sqlite:///{template}")
        # One self-contained file: fold the write-ahead log in before copying.
        with sqlite3.connect(template) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _TEMPLATE["template"] = template
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE["template"], path)
