"""What a rule may look at: signals (measurements and answers), their units and their wording.

A *signal* is one time series of a patient: a device measurement from
:mod:`models.measurements` in its canonical UCUM unit, the questionnaire-derived values
``on_oxygen``, ``consciousness`` and ``symptom_score``, or one scored questionnaire item.
Rules name signals; anything not listed here is refused by validation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from models.identifiers import redact_person_numbers
from models.measurements import (
    CONSCIOUSNESS,
    MEASUREMENTS,
    ON_OXYGEN,
    SYMPTOM_SCORE,
    consciousness_category,
)

# A reading older than this no longer counts as the patient's current value; the same window
# as the model's "latest" features (models/features.py LATEST_LOOKBACK_S), so rules and model
# look at the same readings.
LATEST_LOOKBACK_S = 3 * 24 * 3600
HOUR_S = 3600
DAY_S = 24 * HOUR_S

SYMPTOM_SCORE_UNIT = "{score}"  # UCUM annotation: points, 0–10
ITEM_UNIT = "{points}"  # questionnaire item: 0–3 points


@dataclass(frozen=True)
class NumericSignal:
    """A numeric series a rule may threshold, in its canonical unit."""

    name: str
    unit: str
    unit_display: str
    label_nb: str
    label_en: str
    # Nouns for "change over a window" texts ("Vektøkning over 2 kg på 3 døgn").
    rise_nb: str
    fall_nb: str
    rise_en: str
    fall_en: str
    # Smallest personal SD used for "deviation in SDs", so a flat history (every reading 95 %)
    # does not turn a one-unit change into a many-SD event. Roughly one reading resolution.
    sd_floor: float
    plausible_min: float
    plausible_max: float


@dataclass(frozen=True)
class CategorySignal:
    """A categorical series (stored as a code 0, 1, …; rules name the categories)."""

    name: str
    categories: tuple[str, ...]
    label_nb: str
    label_en: str
    category_nb: tuple[str, ...]
    category_en: tuple[str, ...]


_WORDS = {
    # name: (short nb, short en, rise nb, fall nb, rise en, fall en, sd floor)
    "spo2": ("SpO2", "SpO2", "Økning i SpO2", "Fall i SpO2", "Rise in SpO2", "Fall in SpO2", 1.0),
    "heart_rate": (
        "Puls",
        "Heart rate",
        "Pulsøkning",
        "Pulsfall",
        "Heart-rate rise",
        "Heart-rate fall",
        3.0,
    ),
    "respiratory_rate": (
        "Respirasjonsfrekvens",
        "Respiratory rate",
        "Økning i respirasjonsfrekvens",
        "Fall i respirasjonsfrekvens",
        "Respiratory-rate rise",
        "Respiratory-rate fall",
        1.0,
    ),
    "temperature": (
        "Temperatur",
        "Temperature",
        "Temperaturstigning",
        "Temperaturfall",
        "Temperature rise",
        "Temperature fall",
        0.2,
    ),
    "weight": ("Vekt", "Weight", "Vektøkning", "Vekttap", "Weight gain", "Weight loss", 0.3),
    "systolic_bp": (
        "Systolisk blodtrykk",
        "Systolic blood pressure",
        "Stigning i systolisk blodtrykk",
        "Fall i systolisk blodtrykk",
        "Systolic blood-pressure rise",
        "Systolic blood-pressure fall",
        4.0,
    ),
    "diastolic_bp": (
        "Diastolisk blodtrykk",
        "Diastolic blood pressure",
        "Stigning i diastolisk blodtrykk",
        "Fall i diastolisk blodtrykk",
        "Diastolic blood-pressure rise",
        "Diastolic blood-pressure fall",
        3.0,
    ),
    "glucose": (
        "Blodsukker",
        "Blood glucose",
        "Blodsukkerstigning",
        "Blodsukkerfall",
        "Blood-glucose rise",
        "Blood-glucose fall",
        0.3,
    ),
}


def _numeric_signals() -> dict[str, NumericSignal]:
    out = {
        name: NumericSignal(
            name,
            m.unit,
            m.unit_display,
            *_WORDS[name][:6],
            _WORDS[name][6],
            m.plausible_min,
            m.plausible_max,
        )
        for name, m in MEASUREMENTS.items()
    }
    out[SYMPTOM_SCORE] = NumericSignal(
        SYMPTOM_SCORE,
        SYMPTOM_SCORE_UNIT,
        "poeng",
        "Symptomskår",
        "Symptom score",
        "Økning i symptomskår",
        "Fall i symptomskår",
        "Symptom-score rise",
        "Symptom-score fall",
        1.0,
        0.0,
        10.0,
    )
    return out


NUMERIC_SIGNALS: dict[str, NumericSignal] = _numeric_signals()

# NEWS2 "air or oxygen" and "consciousness" (ACVPU collapsed to alert / new confusion-V-P-U).
CATEGORY_SIGNALS: dict[str, CategorySignal] = {
    ON_OXYGEN: CategorySignal(
        ON_OXYGEN,
        ("air", "oxygen"),
        "Oksygentilførsel",
        "Supplemental oxygen",
        ("luft", "oksygen"),
        ("air", "oxygen"),
    ),
    CONSCIOUSNESS: CategorySignal(
        CONSCIOUSNESS,
        ("alert", "cvpu"),
        "Bevissthet",
        "Consciousness",
        ("våken (A)", "ny forvirring, V, P eller U"),
        ("alert (A)", "new confusion, V, P or U"),
    ),
}

# Scored items (0–3 points each) of the pathway questionnaires in models/questionnaires/
# (FHIR Questionnaire, Helsenorge form-builder style, itemWeight per answer option).
ITEM_MAX_POINTS = 3
QUESTIONNAIRE_ITEMS: dict[str, tuple[str, ...]] = {
    "copd-symptoms": ("dyspnoea", "cough", "sputum_colour", "sputum_volume"),
    "heart-failure-symptoms": ("dyspnoea", "orthopnoea", "ankle_swelling", "fatigue"),
    "post-operative-symptoms": ("wound_pain", "wound_redness", "nausea", "feeling_feverish"),
    "oncology-symptoms": ("fever_chills", "mouth_sores", "diarrhoea", "fatigue"),
    "paediatric-symptoms": ("breathing_effort", "eating_drinking", "activity", "cough"),
}
ITEM_LABELS: dict[str, tuple[str, str]] = {
    "dyspnoea": ("Tung pust", "Breathlessness"),
    "cough": ("Hoste", "Cough"),
    "sputum_colour": ("Farge på oppspytt", "Sputum colour"),
    "sputum_volume": ("Mengde oppspytt", "Sputum volume"),
    "orthopnoea": ("Tung pust i liggende stilling", "Breathless lying flat"),
    "ankle_swelling": ("Hovne ankler", "Ankle swelling"),
    "fatigue": ("Slitenhet", "Fatigue"),
    "wound_pain": ("Smerter i såret", "Wound pain"),
    "wound_redness": ("Rødhet rundt såret", "Redness around the wound"),
    "nausea": ("Kvalme", "Nausea"),
    "feeling_feverish": ("Føler seg febersyk", "Feeling feverish"),
    "fever_chills": ("Feber eller frysninger", "Fever or chills"),
    "mouth_sores": ("Sår i munnen", "Mouth sores"),
    "diarrhoea": ("Diaré", "Diarrhoea"),
    "breathing_effort": ("Pustearbeid", "Breathing effort"),
    "eating_drinking": ("Spising og drikking", "Eating and drinking"),
    "activity": ("Aktivitet", "Activity"),
}


def redact(text: str) -> str:
    """Messages echo what a user typed; an 11-digit number may be a fødselsnummer: hide it."""
    return redact_person_numbers(text, "[11 sifre skjult]")


def item_signal(questionnaire: str, item: str) -> str:
    """Signal name of one questionnaire item: ``q/<questionnaire id>/<linkId>``."""
    return f"q/{questionnaire}/{item}"


def signal_kind(name: str) -> str | None:
    """'numeric', 'category', 'item' or None for an unknown signal name."""
    if name in NUMERIC_SIGNALS:
        return "numeric"
    if name in CATEGORY_SIGNALS:
        return "category"
    if name.startswith("q/"):
        _, questionnaire, item = ([*name.split("/", 2), "", ""])[:3]
        if item in QUESTIONNAIRE_ITEMS.get(questionnaire, ()):
            return "item"
    return None


def category_code(signal: str, value: object) -> float:
    """Numeric code of a categorical value (bool for on_oxygen; 'alert'/'cvpu'); ValueError else."""
    spec = CATEGORY_SIGNALS[signal]
    if signal == ON_OXYGEN and isinstance(value, bool):
        return 1.0 if value else 0.0
    if signal == CONSCIOUSNESS and isinstance(value, str):
        # ACVPU terms and SNOMED CT codes; anything else is refused below with the categories
        with contextlib.suppress(ValueError):
            value = consciousness_category(value)
    if isinstance(value, str) and value.lower() in spec.categories:
        return float(spec.categories.index(value.lower()))
    raise ValueError(f"{signal}: '{value}' is not one of {', '.join(spec.categories)}")
