"""Training-time vectors equal serving-time vectors for the same history.

The serving side is rebuilt from the FHIR resources the simulator emits, through the service's own
parser (`service/fhir/parse.py`, what ingestion runs): codes and units to canonical readings, a BP
panel to its components, a re-send dropped by its idempotency key. Both sides then go through the
one `models.features.compute_features`.
"""

import numpy as np

from models.features import History, compute_features
from service.fhir.parse import parse_observation, parse_questionnaire_response
from training.simulator import cohort_to_fhir, simulate_cohort, snapshot_dataset

PARSERS = {
    "Observation": parse_observation,
    "QuestionnaireResponse": parse_questionnaire_response,
}


def _history_through_the_service_parser(resources, now_s: float) -> History:
    seen: set[str] = set()
    rows = []
    for resource in resources:
        parsed = PARSERS[resource["resourceType"]](resource, now_s)
        if parsed.idempotency_key in seen:
            continue  # idempotent ingestion: a re-send is not a new reading
        seen.add(parsed.idempotency_key)
        assert parsed.subject.patient_id is not None
        key = int(parsed.subject.patient_id)
        rows += [(key, name, parsed.effective_s, value) for name, value in parsed.readings]
    return History.from_rows(rows)


def test_training_vectors_equal_serving_vectors_from_emitted_fhir():
    cohort = simulate_cohort(25, 30, seed=8)
    X_train, _, meta = snapshot_dataset(cohort)
    resources = list(cohort_to_fhir(cohort, lambda p: {"reference": f"Patient/{p.key}"}))
    now_s = float(meta["time_s"].max()) + 86_400  # after the whole history: nothing is "future"
    served = _history_through_the_service_parser(resources, now_s)
    X_serve, _ = compute_features(
        served,
        meta["patient"].to_numpy(),
        meta["time_s"].to_numpy(),
        meta["age_years"].to_numpy(),
        first_reading_s=np.full(len(meta), cohort.start_s, dtype=np.int64),
    )
    np.testing.assert_allclose(X_serve, X_train, rtol=0, atol=1e-9, equal_nan=True)
    assert np.isfinite(X_train).sum() > 0.5 * X_train.size
