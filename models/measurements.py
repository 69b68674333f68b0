"""Canonical measurements: names, FHIR codes, UCUM units, conversions and plausible ranges.

Every other module speaks the canonical names defined here (``spo2``, ``heart_rate`` …);
FHIR codes and foreign units are translated at the edge, once.
Codes: LOINC and SNOMED CT as used by the VKP profiles (hl7norway VkpObservation family).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class Measurement:
    """A measured quantity in its canonical unit."""

    name: str
    unit: str
    loinc: tuple[str, ...]
    snomed: tuple[str, ...]
    plausible_min: float
    plausible_max: float
    label_nb: str
    label_en: str
    unit_display: str
    # Units accepted on input besides the canonical one, with the conversion into it.
    conversions: dict[str, Callable[[float], float]] = field(default_factory=dict)

    def to_canonical(self, value: float, unit: str) -> float:
        unit = ucum_normalise(unit)
        if unit == ucum_normalise(self.unit):
            return value
        conversions = {ucum_normalise(u): f for u, f in self.conversions.items()}
        try:
            return conversions[unit](value)
        except KeyError:
            raise ValueError(
                f"unit '{unit}' is not accepted for {self.name}; expected '{self.unit}'"
                + (f" or one of {sorted(self.conversions)}" if self.conversions else "")
            ) from None

    def is_plausible(self, value: float) -> bool:
        return self.plausible_min <= value <= self.plausible_max


# UCUM is case-sensitive, with one exception: the litre may be written `l` or `L` (UCUM §4.2,
# "l" and "L" are both valid symbols of the same unit), alone or with a metric prefix.
_LITRE_TERM = re.compile(r"^(\d*)(da|[YZEPTGMkhdcmunpfazy])?[lL]$")


def ucum_normalise(unit: str) -> str:
    """One spelling per UCUM unit where UCUM allows several (litre: `mmol/l` == `mmol/L`)."""
    parts = re.split(r"([./])", unit.strip())
    out = []
    for part in parts:
        match = _LITRE_TERM.match(part)
        out.append(f"{match.group(1)}{match.group(2) or ''}L" if match else part)
    return "".join(out)


def _same(value: float) -> float:
    return value


_PER_MIN_ALIASES = {"{beats}/min": _same, "1/min": _same, "{breaths}/min": _same, "/min": _same}

# Plausible ranges are physiological limits of a live patient (wider than alarm limits); readings
# outside them are device or typing errors and are refused rather than scored.
MEASUREMENTS: dict[str, Measurement] = {
    m.name: m
    for m in (
        Measurement(
            "heart_rate",
            "/min",
            ("8867-4",),
            ("364075005",),
            20,
            300,
            "Puls",
            "Heart rate",
            "/min",
            dict(_PER_MIN_ALIASES),
        ),
        Measurement(
            "respiratory_rate",
            "/min",
            ("9279-1",),
            ("86290005",),
            2,
            80,
            "Respirasjonsfrekvens",
            "Respiratory rate",
            "/min",
            dict(_PER_MIN_ALIASES),
        ),
        Measurement(
            "spo2",
            "%",
            ("2708-6", "59408-5"),
            ("431314004",),
            0,
            100,
            "Oksygenmetning (SpO2)",
            "Oxygen saturation (SpO2)",
            "%",
        ),
        Measurement(
            "temperature",
            "Cel",
            ("8310-5",),
            ("276885007",),
            25,
            45,
            "Kroppstemperatur",
            "Body temperature",
            "°C",
            {"[degF]": lambda v: (v - 32.0) * 5.0 / 9.0},
        ),
        Measurement(
            "weight",
            "kg",
            ("29463-7",),
            ("27113001",),
            0.3,
            400,
            "Kroppsvekt",
            "Body weight",
            "kg",
            {"[lb_av]": lambda v: v * 0.45359237, "g": lambda v: v / 1000.0},
        ),
        Measurement(
            "systolic_bp",
            "mm[Hg]",
            ("8480-6",),
            ("271649006",),
            40,
            300,
            "Systolisk blodtrykk",
            "Systolic blood pressure",
            "mmHg",
            {"kPa": lambda v: v * 7.50061683},
        ),
        Measurement(
            "diastolic_bp",
            "mm[Hg]",
            ("8462-4",),
            ("271650006",),
            20,
            200,
            "Diastolisk blodtrykk",
            "Diastolic blood pressure",
            "mmHg",
            {"kPa": lambda v: v * 7.50061683},
        ),
        Measurement(
            "glucose",
            "mmol/L",
            ("15074-8",),
            ("434912009",),
            0.5,
            50,
            "Blodsukker",
            "Blood glucose",
            "mmol/L",
            {"mg/dL": lambda v: v / 18.016},
        ),
    )
}

# The blood-pressure panel carries no value of its own; its components do.
BLOOD_PRESSURE_PANEL = {"loinc": ("85354-9",), "snomed": ("75367002",)}
# Further components the (open-sliced) VKP and DIPS blood-pressure profiles carry: stored as
# readings under these names, in mm[Hg], but not scored (no rule or feature reads them).
BLOOD_PRESSURE_EXTRA_COMPONENTS: dict[tuple[str, str], str] = {
    (LOINC, "8478-0"): "mean_arterial_pressure",
    (SNOMED, "6797001"): "mean_arterial_pressure",
    (SNOMED, "4461000202102"): "pulse_pressure",  # Norwegian SNOMED CT extension
    (SNOMED, "87179004"): "pulse_pressure",
}
BLOOD_PRESSURE_EXTRA_PLAUSIBLE = (0.0, 300.0)  # mm[Hg]

# Values that arrive as questionnaire answers rather than device readings, with their meaning.
ON_OXYGEN = "on_oxygen"  # bool: receiving supplemental oxygen (NEWS2 "air or oxygen")
CONSCIOUSNESS = "consciousness"  # "alert" or "cvpu" (new confusion, voice, pain, unresponsive)

# ACVPU (RCP NEWS2 chart, 2017): the words clinicians and devices use. NEWS2 scores 0 for Alert and
# 3 for any of new Confusion, Voice, Pain, Unresponsive, so they collapse to "cvpu".
ACVPU_LEVELS = ("alert", "confusion", "voice", "pain", "unresponsive")
# SNOMED CT findings for the levels (international edition), and the VKP consciousness
# profile's observable (UK extension 1104441000000107, "ACVPU scale score").
ACVPU_SNOMED: dict[str, str] = {
    "248234008": "alert",  # Mentally alert (finding)
    "40917007": "confusion",  # Clouded consciousness / confusion (finding)
    "286933003": "confusion",  # Confusional state (finding)
    "300202002": "voice",  # Responds to voice (finding)
    "450847001": "pain",  # Responds to pain (finding)
    "422768004": "unresponsive",  # Unresponsive (finding)
}
ACVPU_OBSERVABLES = ("1104441000000107",)
_ACVPU_ALIASES = {
    "a": "alert",
    "c": "confusion",
    "new confusion": "confusion",
    "new-confusion": "confusion",
    "confused": "confusion",
    "v": "voice",
    "p": "pain",
    "u": "unresponsive",
}


def consciousness_category(value: str) -> str:
    """'alert' or 'cvpu' for an ACVPU term, letter or SNOMED CT code; ValueError otherwise."""
    term = value.strip().lower()
    term = ACVPU_SNOMED.get(term, _ACVPU_ALIASES.get(term, term))
    if term == "alert":
        return "alert"
    if term == "cvpu" or term in ACVPU_LEVELS:
        return "cvpu"
    raise ValueError(
        f"consciousness '{value}' is not an ACVPU level ({', '.join(ACVPU_LEVELS)}, or cvpu)"
    )


SYMPTOM_SCORE = "symptom_score"  # pathway questionnaire total, normalised to 0–10 points

_BY_CODE: dict[tuple[str, str], str] = {}
for _m in MEASUREMENTS.values():
    _BY_CODE.update({(LOINC, c): _m.name for c in _m.loinc})
    _BY_CODE.update({(SNOMED, c): _m.name for c in _m.snomed})


def measurement_for_code(system: str, code: str) -> str | None:
    """Canonical measurement name for a LOINC or SNOMED CT code, or None if we do not know it."""
    return _BY_CODE.get((system, code))


def is_blood_pressure_panel(system: str, code: str) -> bool:
    return (system == LOINC and code in BLOOD_PRESSURE_PANEL["loinc"]) or (
        system == SNOMED and code in BLOOD_PRESSURE_PANEL["snomed"]
    )
