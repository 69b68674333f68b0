"""Training-time vectors equal serving-time vectors for the same history.

The serving side here is rebuilt only from the FHIR resources the simulator emits (as the
ingestion API receives them): codes -> canonical names, BP panel -> components, duplicates
dropped by identifier, questionnaire answers scored with models.questionnaires. Both sides then
go through the one models.features.compute_features.
"""

import numpy as np

from models.features import History, compute_features
from models.measurements import (
    LOINC,
    SYMPTOM_SCORE,
    is_blood_pressure_panel,
    measurement_for_code,
)
from models.questionnaires import answers_from_response, questionnaire_by_url, score_answers
from training.simulator import simulate_cohort, snapshot_dataset


def _epoch(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text).timestamp())


def _history_from_fhir(resources, key_of_reference) -> History:
    seen: set[str] = set()
    rows = []
    for r in resources:
        ident = (
            r["identifier"][0]["value"]
            if isinstance(r["identifier"], list)
            else r["identifier"]["value"]
        )
        if ident in seen:
            continue  # idempotent ingestion: a re-send is not a new reading
        seen.add(ident)
        key = key_of_reference(r["subject"])
        if r["resourceType"] == "QuestionnaireResponse":
            score = score_answers(
                questionnaire_by_url(r["questionnaire"]), answers_from_response(r)
            )
            rows.append((key, SYMPTOM_SCORE, _epoch(r["authored"]), score.symptom_score))
            continue
        t = _epoch(r["effectiveDateTime"])
        coding = r["code"]["coding"][0]
        if is_blood_pressure_panel(coding["system"], coding["code"]):
            for comp in r["component"]:
                c = comp["code"]["coding"][0]
                rows.append(
                    (
                        key,
                        measurement_for_code(c["system"], c["code"]),
                        t,
                        float(comp["valueQuantity"]["value"]),
                    )
                )
            continue
        loinc = next(c for c in r["code"]["coding"] if c["system"] == LOINC)
        rows.append(
            (key, measurement_for_code(LOINC, loinc["code"]), t, float(r["valueQuantity"]["value"]))
        )
    return History.from_rows(rows)


def test_training_vectors_equal_serving_vectors_from_emitted_fhir():
    from training.simulator import cohort_to_fhir

    cohort = simulate_cohort(25, 30, seed=8)
    X_train, _, meta = snapshot_dataset(cohort)
    resources = list(cohort_to_fhir(cohort, lambda p: {"reference": f"Patient/{p.key}"}))
    served = _history_from_fhir(resources, lambda s: int(s["reference"].split("/")[1]))
    X_serve, _ = compute_features(
        served,
        meta["patient"].to_numpy(),
        meta["time_s"].to_numpy(),
        meta["age_years"].to_numpy(),
        first_reading_s=np.full(len(meta), cohort.start_s, dtype=np.int64),
    )
    np.testing.assert_allclose(X_serve, X_train, rtol=0, atol=1e-9, equal_nan=True)
    assert np.isfinite(X_train).sum() > 0.5 * X_train.size
