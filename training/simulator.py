"""Synthetic home-monitoring cohort: five pathways, personal baselines, adherence, device
artefacts, prodromes before deteriorations and benign look-alikes. Deterministic for a seed.

No real patient data is used anywhere. Parameters are drawn from published descriptions of
each population and are cited next to them; where no source gives a number, the comment says
"assumption". Event rates are ENRICHED (several times the population rates) so that a cohort of
a few thousand patients has enough deteriorations to learn from; absolute risks from a model
trained here are therefore not transferable (see training/README.md).

Label: a deterioration needing hospital contact within the next 72 h of the reference time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from models.features import (
    AGE_BAND_LABELS,
    CHANNEL_INDEX,
    DAY_S,
    HOUR_S,
    History,
    age_band,
    compute_features,
    patient_day_times,
)
from models.identifiers import individual_range, person_number_for
from models.measurements import (
    CONSCIOUSNESS,
    LOINC,
    MEASUREMENTS,
    ON_OXYGEN,
    SNOMED,
    SYMPTOM_SCORE,
    UCUM,
)
from models.questionnaires import (
    CANONICAL_BASE,
    PATHWAY_QUESTIONNAIRE,
    load_questionnaire,
    score_answers,
    scored_items,
)

PATHWAYS: tuple[str, ...] = ("copd", "heart-failure", "post-operative", "oncology", "paediatric")
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday; fixed so a seed fixes everything
LABEL_HORIZON_S = 72 * HOUR_S
FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
MESSAGE_ID_SYSTEM = "https://triage.example.org/fhir/sid/simulated-message"
_MESSAGE_NAMESPACE = uuid.UUID("6f1c1c1e-3f4a-5b7e-9a51-7d0c2f3e8a10")

# Device resolution: what a home oximeter, cuff, thermometer or scale reports.
_RESOLUTION = {
    "spo2": 1.0,
    "heart_rate": 1.0,
    "respiratory_rate": 1.0,
    "temperature": 0.1,
    "systolic_bp": 1.0,
    "diastolic_bp": 1.0,
    "weight": 0.1,
}
_DEVICE_DISPLAY = {
    "spo2": "Pulsoksymeter (Bluetooth)",
    "heart_rate": "Pulsoksymeter (Bluetooth)",
    "respiratory_rate": "Manuelt talt (pasient/pårørende)",
    "temperature": "Digitalt termometer",
    "systolic_bp": "Blodtrykksmåler, overarm",
    "weight": "Badevekt (Bluetooth)",
}


@dataclass(frozen=True)
class PathwayProfile:
    """Population, schedule, deterioration and look-alike parameters of one pathway."""

    pathway: str
    age_mean: float
    age_sd: float
    age_min: float
    age_max: float
    female_share: float
    devices: tuple[str, ...]  # channels every patient measures (besides the questionnaire)
    optional_devices: dict[str, float]  # channel -> share of patients who also measure it
    baseline: dict[str, tuple[float, float]]  # between-patient mean and SD
    day_sd: dict[str, float]  # day-to-day SD within a patient
    comorbidities: dict[str, float]
    event_rate_per_day: float
    prodrome_days: tuple[int, int]
    change: dict[str, float]  # full-strength change at onset (vitals: units; items: points)
    benign_rate_per_day: float
    benign_days: tuple[int, int]
    benign_change: dict[str, float]
    item_baseline: float  # typical daily points per questionnaire item when stable
    admission_days: tuple[int, int]
    follow_up_days: int | None = None
    relative_change: frozenset[str] = frozenset()  # channels whose change is a fraction


# Sources (full references in training/README.md):
# [Seemungal2000] Seemungal TAR et al. Time course and recovery of exacerbations in patients with
#   COPD. Am J Respir Crit Care Med 2000;161:1608–13 (prodrome of symptom change, median ~5 d).
# [AlRajeh2016] Al Rajeh AM, Hurst JR. Monitoring of physiological parameters to predict
#   exacerbations of COPD: a systematic review. J Clin Med 2016;5:108 (SpO2 falls 1–2 %, HR
#   and RR rise before onset).
# [Hurst2010] Hurst JR et al. Susceptibility to exacerbation in COPD. N Engl J Med
#   2010;363:1128–38 (ECLIPSE; exacerbation frequency).
# [Chaudhry2007] Chaudhry SI et al. Patterns of weight change preceding hospitalization for
#   heart failure. Circulation 2007;116:1549–54 (gain starts ~1 week before admission).
# [Zhang2009] Zhang J et al. Predicting hospitalization due to worsening heart failure using
#   daily weight measurement (TEN-HMS). Eur J Heart Fail 2009;11:420–7 (weight rules are
#   specific but insensitive).
# [Stehlik2020] Stehlik J et al. LINK-HF. Circ Heart Fail 2020;13:e006513 (HR, RR rise; median
#   warning 6.5 d).
# [Hyman2007] Hyman N et al. Anastomotic leaks after intestinal anastomosis. Ann Surg
#   2007;245:254–8 (leak diagnosed median post-op day 12, tachycardia and fever first).
# [Mangram1999] Mangram AJ et al. CDC guideline for prevention of surgical site infection.
#   Infect Control Hosp Epidemiol 1999;20:250–78 (SSI presents day 5–10: pain, redness, fever).
# [Klastersky2016] Klastersky J et al. Management of febrile neutropaenia: ESMO guidelines.
#   Ann Oncol 2016;27(S5):v111–8 (fever ≥38.0–38.3 °C at the nadir, day 7–14 of a cycle).
# [Crawford2004] Crawford J et al. Chemotherapy-induced neutropenia. Cancer 2004;100:228–37.
# [Fleming2011] Fleming S et al. Normal ranges of heart rate and respiratory rate in children
#   from birth to 18 years. Lancet 2011;377:1011–8 (age-specific medians used below).
# [Thompson2009] Thompson M et al. Deriving temperature and age appropriate heart rate centiles
#   for children with acute infections. Arch Dis Child 2009;94:361–5 (~10 /min per °C).
# [ODriscoll2017] O'Driscoll BR et al. BTS guideline for oxygen use in adults. Thorax
#   2017;72:ii1–90 (COPD SpO2 targets 88–92 %).
# [RCP2017] Royal College of Physicians. National Early Warning Score (NEWS) 2. 2017.
PROFILES: dict[str, PathwayProfile] = {
    "copd": PathwayProfile(
        "copd",
        71,
        8,
        45,
        92,
        0.52,
        devices=("spo2", "heart_rate", "temperature"),
        optional_devices={"respiratory_rate": 0.5},
        # Stable COPD in home follow-up: SpO2 around 92–95 % [ODriscoll2017]; resting HR ~85.
        baseline={
            "spo2": (93.5, 1.8),
            "heart_rate": (84, 10),
            "respiratory_rate": (19, 2.5),
            "temperature": (36.7, 0.25),
        },
        day_sd={"spo2": 1.0, "heart_rate": 5.0, "respiratory_rate": 1.6, "temperature": 0.22},
        comorbidities={
            "hypertension": 0.45,
            "heart_failure": 0.2,
            "diabetes": 0.18,
            "hypercapnic_respiratory_failure": 0.15,
            "long_term_oxygen": 0.12,
        },
        # Frequent exacerbators ~2/yr [Hurst2010]; enriched ×~3 for a home follow-up cohort.
        event_rate_per_day=1 / 60,
        prodrome_days=(3, 7),  # symptom changes precede onset by days [Seemungal2000]
        change={
            "spo2": -3.0,
            "heart_rate": 10.0,
            "respiratory_rate": 4.0,
            "temperature": 0.5,
            "dyspnoea": 1.8,
            "cough": 1.2,
            "sputum_colour": 1.8,
            "sputum_volume": 1.5,
        },
        # Common colds without exacerbation: cough and a little fever, vitals barely move.
        benign_rate_per_day=1 / 25,
        benign_days=(2, 5),
        benign_change={
            "heart_rate": 4.0,
            "temperature": 0.4,
            "respiratory_rate": 1.5,
            "spo2": -0.8,
            "cough": 1.4,
            "sputum_volume": 0.9,
            "dyspnoea": 0.7,
            "sputum_colour": 0.6,
        },
        item_baseline=1.0,
        admission_days=(3, 8),
    ),
    "heart-failure": PathwayProfile(
        "heart-failure",
        75,
        9,
        40,
        95,
        0.36,
        devices=("weight", "systolic_bp", "heart_rate", "spo2"),
        optional_devices={},
        baseline={
            "weight": (84, 16),
            "systolic_bp": (121, 15),
            "heart_rate": (71, 10),
            "spo2": (95.5, 1.5),
        },
        day_sd={"weight": 0.45, "systolic_bp": 8.0, "heart_rate": 5.0, "spo2": 1.0},
        comorbidities={
            "hypertension": 0.65,
            "atrial_fibrillation": 0.4,
            "diabetes": 0.35,
            "chronic_kidney_disease": 0.3,
            "copd": 0.2,
        },
        event_rate_per_day=1 / 70,  # enriched; ~1 HF admission/yr in the population
        prodrome_days=(3, 7),  # weight gain over the week before admission [Chaudhry2007]
        change={
            "weight": 2.4,
            "heart_rate": 8.0,
            "spo2": -2.0,
            "systolic_bp": -6.0,
            "dyspnoea": 1.8,
            "orthopnoea": 1.8,
            "ankle_swelling": 1.8,
            "fatigue": 1.2,
        },
        # Salty meals and diuretic timing move weight by 1–2 kg without decompensation.
        benign_rate_per_day=1 / 20,
        benign_days=(2, 5),
        benign_change={"weight": 1.6, "ankle_swelling": 1.0, "fatigue": 0.8, "heart_rate": 2.0},
        item_baseline=0.7,
        admission_days=(4, 10),
    ),
    "post-operative": PathwayProfile(
        "post-operative",
        63,
        13,
        20,
        90,
        0.5,
        devices=("temperature", "heart_rate", "spo2", "systolic_bp"),
        optional_devices={"respiratory_rate": 0.3},
        baseline={
            "temperature": (36.8, 0.25),
            "heart_rate": (77, 10),
            "spo2": (96.5, 1.2),
            "systolic_bp": (128, 15),
            "respiratory_rate": (16, 2.0),
        },
        day_sd={
            "temperature": 0.25,
            "heart_rate": 6.0,
            "spo2": 1.0,
            "systolic_bp": 9.0,
            "respiratory_rate": 1.5,
        },
        comorbidities={
            "colorectal_cancer": 0.5,
            "hypertension": 0.35,
            "diabetes": 0.15,
            "inflammatory_bowel_disease": 0.12,
        },
        # SSI/anastomotic leak in 10–20 % after colorectal surgery; enriched to ~25 %.
        event_rate_per_day=0.25,  # per patient, placed by _postop_event_day()
        prodrome_days=(2, 5),  # tachycardia and fever precede diagnosis [Hyman2007]
        change={
            "temperature": 1.4,
            "heart_rate": 20.0,
            "respiratory_rate": 4.0,
            "systolic_bp": -12.0,
            "spo2": -1.5,
            "wound_pain": 1.5,
            "wound_redness": 2.0,
            "nausea": 1.2,
            "feeling_feverish": 2.0,
        },
        # Benign: constipation, mild wound irritation, low-grade fever from atelectasis.
        benign_rate_per_day=1 / 15,
        benign_days=(1, 3),
        benign_change={
            "temperature": 0.7,
            "heart_rate": 8.0,
            "wound_pain": 1.0,
            "nausea": 1.1,
            "wound_redness": 0.5,
        },
        item_baseline=0.6,
        admission_days=(5, 12),
        follow_up_days=30,
    ),
    "oncology": PathwayProfile(
        "oncology",
        61,
        12,
        22,
        88,
        0.56,
        devices=("temperature", "heart_rate", "spo2", "systolic_bp"),
        optional_devices={},
        baseline={
            "temperature": (36.7, 0.25),
            "heart_rate": (80, 11),
            "spo2": (97.0, 1.2),
            "systolic_bp": (124, 15),
        },
        day_sd={"temperature": 0.25, "heart_rate": 6.0, "spo2": 0.9, "systolic_bp": 9.0},
        comorbidities={
            "breast_cancer": 0.35,
            "colorectal_cancer": 0.25,
            "lymphoma": 0.2,
            "lung_cancer": 0.2,
            "diabetes": 0.12,
        },
        # Febrile neutropenia 5–25 % of patients per regimen [Crawford2004]; enriched to ~20 %
        # per 21-day cycle, at the nadir (cycle day 7–13) [Klastersky2016].
        event_rate_per_day=0.20,  # per cycle, placed by _oncology_event_days()
        prodrome_days=(1, 3),  # neutropenic fever rises within hours to a couple of days
        change={
            "temperature": 1.7,
            "heart_rate": 18.0,
            "systolic_bp": -10.0,
            "spo2": -1.0,
            "fever_chills": 2.5,
            "mouth_sores": 1.2,
            "diarrhoea": 1.0,
            "fatigue": 1.5,
        },
        # Benign: transient low-grade fever and tachycardia without neutropenia.
        benign_rate_per_day=1 / 25,
        benign_days=(1, 3),
        benign_change={"temperature": 0.7, "heart_rate": 7.0, "fever_chills": 1.0, "fatigue": 0.8},
        item_baseline=0.6,
        admission_days=(4, 8),
    ),
    "paediatric": PathwayProfile(
        "paediatric",
        0,
        0,
        0.1,
        17.9,
        0.45,
        devices=("spo2", "heart_rate", "temperature", "respiratory_rate"),
        optional_devices={},
        # HR and RR baselines come from age ([Fleming2011]); these SDs are relative (×median).
        baseline={
            "spo2": (97.5, 1.0),
            "heart_rate": (1.0, 0.07),
            "respiratory_rate": (1.0, 0.10),
            "temperature": (36.9, 0.25),
        },
        day_sd={"spo2": 1.0, "heart_rate": 0.06, "respiratory_rate": 0.08, "temperature": 0.3},
        comorbidities={
            "asthma": 0.4,
            "bronchopulmonary_dysplasia": 0.1,
            "congenital_heart_disease": 0.08,
            "long_term_oxygen": 0.06,
        },
        event_rate_per_day=1 / 45,  # children on respiratory home follow-up; enriched
        prodrome_days=(1, 4),
        change={
            "respiratory_rate": 0.35,
            "heart_rate": 0.15,
            "spo2": -4.0,
            "temperature": 1.0,
            "breathing_effort": 2.0,
            "eating_drinking": 1.8,
            "activity": 1.5,
            "cough": 1.0,
        },
        # Self-limiting viral fever: HR up ~10 /min per °C [Thompson2009], no distress.
        benign_rate_per_day=1 / 18,
        benign_days=(1, 4),
        benign_change={
            "temperature": 1.2,
            "heart_rate": 0.10,
            "respiratory_rate": 0.08,
            "cough": 1.0,
            "activity": 0.8,
            "eating_drinking": 0.6,
        },
        item_baseline=0.7,
        admission_days=(2, 5),
        relative_change=frozenset({"heart_rate", "respiratory_rate"}),
    ),
}

# [Fleming2011] median HR and RR by age (years, midpoint of their age groups).
_FLEMING_AGE = np.array([0.125, 0.375, 0.625, 0.875, 1.25, 1.75, 2.5, 3.5, 5, 7, 10, 13.5, 16.5])
_FLEMING_HR = np.array([143, 140, 134, 128, 123, 116, 110, 104, 98, 91, 84, 78, 73], float)
_FLEMING_RR = np.array([43, 41, 39, 37, 35, 31, 28, 25, 23, 21, 19, 18, 16], float)


@dataclass
class SimPatient:
    """One synthetic patient. ``identifier`` is a synthetic fødselsnummer: never log it."""

    key: int
    pathway: str
    birth_date: date
    sex: str
    age_years: float
    comorbidities: tuple[str, ...]
    identifier: str = field(repr=False)
    events: list[datetime] = field(default_factory=list)
    hypercapnic: bool = False
    long_term_oxygen: bool = False
    follow_up_days: int = 0

    @property
    def questionnaire_id(self) -> str:
        return PATHWAY_QUESTIONNAIRE[self.pathway]


@dataclass
class Readings:
    """Long table of every reading sent, duplicates included (they share a message id)."""

    patient: np.ndarray  # int64 patient key
    channel: np.ndarray  # str: canonical measurement names, symptom_score, on_oxygen, ...
    time_s: np.ndarray  # int64 epoch seconds
    value: np.ndarray  # float64; on_oxygen 1.0/0.0, consciousness 0.0 alert / 1.0 cvpu
    message_id: np.ndarray  # str: the identifier of the FHIR resource that carried it

    def __len__(self) -> int:
        return len(self.patient)

    def rows(self) -> Iterator[tuple[int, str, int, object, str]]:
        """(patient key, channel, epoch seconds, value, message id) with typed booleans/codes."""
        for p, ch, t, v, m in zip(
            self.patient, self.channel, self.time_s, self.value, self.message_id, strict=True
        ):
            value: object = float(v)
            if ch == ON_OXYGEN:
                value = bool(v)
            elif ch == CONSCIOUSNESS:
                value = "cvpu" if v else "alert"
            yield int(p), str(ch), int(t), value, str(m)


@dataclass
class AnswerSet:
    """One questionnaire response as the patient sent it."""

    patient: int
    time_s: int
    questionnaire_id: str
    answers: dict[str, object]
    message_id: str


@dataclass
class Cohort:
    """A simulated cohort: patients, every reading and answer sent, and the events."""

    patients: list[SimPatient]
    readings: Readings
    questionnaire_answers: list[AnswerSet]
    seed: int
    start: datetime
    days: int
    # Per patient: onset times (s) and admission end times (s) of each deterioration.
    event_onset_s: list[np.ndarray]
    admission_end_s: list[np.ndarray]
    # Per patient, for analysis and tests: (onset s, prodrome length s, strength) of each
    # deterioration, and (start s, length s, strength) of each benign look-alike episode.
    prodromes: list[list[tuple[int, float, float]]] = field(default_factory=list)
    benign_episodes: list[list[tuple[int, float, float]]] = field(default_factory=list)

    def history(self) -> History:
        """Model channels, deduplicated by message id as idempotent ingestion stores them."""
        keep = np.isin(self.readings.channel, list(CHANNEL_INDEX))
        keys = np.char.add(self.readings.message_id.astype(str), self.readings.channel.astype(str))
        _, first = np.unique(keys, return_index=True)
        unique = np.zeros(len(keys), dtype=bool)
        unique[first] = True
        sel = keep & unique
        order = np.flatnonzero(sel)
        return History(
            patient=self.readings.patient[order].astype(np.int64),
            channel=np.array(
                [CHANNEL_INDEX[c] for c in self.readings.channel[order]], dtype=np.int64
            ),
            time_s=self.readings.time_s[order].astype(np.int64),
            value=self.readings.value[order].astype(np.float64),
        )

    @property
    def start_s(self) -> int:
        return int(self.start.timestamp())


# ---------------------------------------------------------------------------------------------
# Identifiers


def synthetic_fnr(birth: date, rng: np.random.Generator, synthetic_month: bool = True) -> str:
    """A valid fødselsnummer for the birth date; month +80 marks it synthetic (Tenor test data).

    The rules are those of `models/identifiers.py`; only the random start is chosen here.
    """
    lo, hi = individual_range(birth.year)
    start = int(rng.integers(lo, hi + 1))
    for step in range(hi - lo + 1):
        individual = lo + (start - lo + step) % (hi - lo + 1)
        number = person_number_for(birth, individual, synthetic_month)
        if number is not None:
            return number
    raise ValueError("no valid fødselsnummer for this birth date")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Simulation


def _message_id(seed: int, key: int, time_s: int, kind: str) -> str:
    return str(uuid.uuid5(_MESSAGE_NAMESPACE, f"{seed}/{key}/{time_s}/{kind}"))


def _ramp(t_s: np.ndarray, onset_s: float, length_s: float) -> np.ndarray:
    """0 before the prodrome, accelerating to 1 at onset (changes grow fastest near the end)."""
    frac = np.clip((t_s - (onset_s - length_s)) / length_s, 0.0, 1.0)
    return np.where(t_s < onset_s, frac**1.5, 0.0)


def _bump(t_s: np.ndarray, start_s: float, length_s: float) -> np.ndarray:
    """A benign episode: rises and resolves within its length."""
    frac = (t_s - start_s) / length_s
    return np.where((frac > 0) & (frac < 1), np.sin(np.pi * np.clip(frac, 0, 1)), 0.0)


def _prodrome_strength(rng: np.random.Generator) -> float:
    """Strength of a prodrome: most moderate, some strong, ~15 % nearly silent (assumption)."""
    if rng.random() < 0.15:
        return float(rng.uniform(0.0, 0.25))
    return float(np.clip(rng.gamma(3.0, 0.33), 0.2, 2.0))


def _event_onsets(
    profile: PathwayProfile,
    rng: np.random.Generator,
    horizon_days: int,
    follow_up_days: int,
    cycle_phase_days: float,
) -> tuple[list[float], list[float]]:
    """Onset (days from start) and admission length (days) of each deterioration."""
    onsets: list[float] = []
    stays: list[float] = []
    if profile.pathway == "post-operative":
        # Discharged ~day 2–4 after surgery; infections present day 5–12 after surgery
        # [Mangram1999, Hyman2007], i.e. about day 1–10 of home follow-up.
        if rng.random() < profile.event_rate_per_day:
            onsets.append(float(np.clip(1.0 + rng.gamma(3.0, 1.5), 1.0, follow_up_days + 2)))
    elif profile.pathway == "oncology":
        cycle_start = -cycle_phase_days
        while cycle_start < horizon_days:
            if rng.random() < profile.event_rate_per_day:
                onset = cycle_start + rng.uniform(7, 13) + rng.uniform(0, 1)
                if 0.5 < onset < horizon_days:
                    onsets.append(float(onset))
            cycle_start += 21
    else:
        t = float(rng.exponential(1 / profile.event_rate_per_day))
        while t < horizon_days:
            onsets.append(t)
            stay = float(rng.integers(*profile.admission_days, endpoint=True))
            # Recovery after discharge before another event can start (assumption: 7 days).
            t += stay + 7 + float(rng.exponential(1 / profile.event_rate_per_day))
    for _ in onsets:
        stays.append(float(rng.integers(*profile.admission_days, endpoint=True)))
    return onsets, stays


def _patient_baseline(
    profile: PathwayProfile, age: float, rng: np.random.Generator
) -> dict[str, float]:
    base: dict[str, float] = {}
    for ch, (mean, sd) in profile.baseline.items():
        if profile.pathway == "paediatric" and ch in ("heart_rate", "respiratory_rate"):
            median = np.interp(
                age, _FLEMING_AGE, _FLEMING_HR if ch == "heart_rate" else _FLEMING_RR
            )
            base[ch] = float(median * rng.normal(mean, sd))
        else:
            base[ch] = float(rng.normal(mean, sd))
    if "spo2" in base:
        base["spo2"] = float(np.clip(base["spo2"], 88, 99.5))
    return base


def simulate_cohort(
    n_patients: int,
    days: int,
    seed: int,
    pathways: Sequence[str] | None = None,
    start: datetime | None = None,
) -> Cohort:
    """Simulate ``n_patients`` for ``days`` days of home follow-up (pathways round-robin)."""
    pathways = tuple(pathways) if pathways else PATHWAYS
    unknown = [p for p in pathways if p not in PROFILES]
    if unknown:
        raise ValueError(f"unknown pathway(s) {unknown}; known: {', '.join(PATHWAYS)}")
    start = start or DEFAULT_START
    start_s = int(start.timestamp())
    root = np.random.default_rng(seed)
    patient_seeds = root.integers(0, 2**63 - 1, size=n_patients)
    questionnaires = {pw: load_questionnaire(PATHWAY_QUESTIONNAIRE[pw]) for pw in pathways}

    patients: list[SimPatient] = []
    cols: dict[str, list[Any]] = {
        "patient": [],
        "channel": [],
        "time_s": [],
        "value": [],
        "message_id": [],
    }
    answer_sets: list[AnswerSet] = []
    onsets_all: list[np.ndarray] = []
    prodromes_all: list[list[tuple[int, float, float]]] = []
    benign_all: list[list[tuple[int, float, float]]] = []
    admission_end_all: list[np.ndarray] = []
    for key in range(n_patients):
        pathway = pathways[key % len(pathways)]
        rng = np.random.default_rng(patient_seeds[key])
        p, onsets_s, adm_end_s, episodes = _simulate_patient(
            key,
            PROFILES[pathway],
            questionnaires[pathway],
            rng,
            seed,
            start,
            start_s,
            days,
            cols,
            answer_sets,
        )
        patients.append(p)
        onsets_all.append(onsets_s)
        prodromes_all.append(episodes[0])
        benign_all.append(episodes[1])
        admission_end_all.append(adm_end_s)

    readings = Readings(
        patient=np.asarray(cols["patient"], dtype=np.int64),
        channel=np.asarray(cols["channel"], dtype=str),
        time_s=np.asarray(cols["time_s"], dtype=np.int64),
        value=np.asarray(cols["value"], dtype=np.float64),
        message_id=np.asarray(cols["message_id"], dtype=str),
    )
    order = np.lexsort((readings.channel, readings.time_s, readings.patient))
    readings = Readings(
        readings.patient[order],
        readings.channel[order],
        readings.time_s[order],
        readings.value[order],
        readings.message_id[order],
    )
    return Cohort(
        patients,
        readings,
        answer_sets,
        seed,
        start,
        days,
        onsets_all,
        admission_end_all,
        prodromes_all,
        benign_all,
    )


def _simulate_patient(
    key: int,
    profile: PathwayProfile,
    questionnaire: dict[str, Any],
    rng: np.random.Generator,
    seed: int,
    start: datetime,
    start_s: int,
    days: int,
    cols: dict[str, list[Any]],
    answer_sets: list[AnswerSet],
) -> tuple[SimPatient, np.ndarray, np.ndarray, tuple[list[Any], list[Any]]]:
    # --- who ---------------------------------------------------------------------------------
    if profile.pathway == "paediatric":
        # Respiratory home follow-up is mostly for the youngest children (assumption).
        age = float(np.clip(rng.gamma(1.3, 3.0), profile.age_min, profile.age_max))
    else:
        age = float(
            np.clip(rng.normal(profile.age_mean, profile.age_sd), profile.age_min, profile.age_max)
        )
    sex = "female" if rng.random() < profile.female_share else "male"
    birth = (start - timedelta(days=age * 365.25)).date()
    comorbid = tuple(c for c, share in profile.comorbidities.items() if rng.random() < share)
    identifier = synthetic_fnr(birth, rng)
    ltot = "long_term_oxygen" in comorbid
    hypercapnic = "hypercapnic_respiratory_failure" in comorbid
    base = _patient_baseline(profile, age, rng)
    if ltot and "spo2" in base:
        base["spo2"] = float(np.clip(base["spo2"] - 2.0, 86, 96))  # on LTOT, target 88–92 %
    devices = list(profile.devices) + [
        ch for ch, share in profile.optional_devices.items() if rng.random() < share
    ]
    # Adherence: share of days missed ~ Beta, mean ~15 % (telemonitoring trials report 10–25 %
    # missed days; assumption within that range). Late readings: ~10 % of sessions.
    p_miss = float(rng.beta(1.5, 8.5))
    p_late = float(rng.uniform(0.03, 0.2))
    follow_up = min(days, profile.follow_up_days or days)

    # --- what happens ------------------------------------------------------------------------
    horizon = follow_up + 3  # events after the last reading still label the final 72 h
    cycle_phase = float(rng.uniform(0, 21))  # oncology: where in its 21-day cycle it enrols
    onset_days, stay_days = _event_onsets(profile, rng, horizon, follow_up, cycle_phase)
    prodromes = [
        (d * DAY_S, rng.uniform(*profile.prodrome_days) * DAY_S, _prodrome_strength(rng))
        for d in onset_days
    ]
    n_benign = rng.poisson(profile.benign_rate_per_day * follow_up)
    benign = [
        (
            rng.uniform(-2, follow_up) * DAY_S,
            rng.uniform(*profile.benign_days) * DAY_S,
            float(rng.uniform(0.4, 1.3)),
        )
        for _ in range(n_benign)
    ]
    onsets_s = np.array([start_s + o for o, _, _ in prodromes], dtype=np.int64)
    adm_end_s = onsets_s + (np.array(stay_days) * DAY_S).astype(np.int64)

    # --- when readings are taken ------------------------------------------------------------
    day_idx = np.arange(follow_up)
    morning_h = float(rng.normal(7.5, 1.0))  # measured before breakfast (UTC ≈ 08–09 local)
    t_rel = day_idx * DAY_S + (morning_h + rng.normal(0, 0.6, follow_up)) * HOUR_S
    late = rng.random(follow_up) < p_late
    t_rel = t_rel + np.where(late, rng.uniform(3, 12, follow_up) * HOUR_S, 0.0)

    def offsets(t: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Change per channel/item at relative times t, and the prodrome ramp (max over events)."""
        out: dict[str, np.ndarray] = {}
        ramp_max = np.zeros_like(t)
        for onset, length, strength in prodromes:
            r = _ramp(t, onset, length) * strength
            ramp_max = np.maximum(ramp_max, r)
            for name, delta in profile.change.items():
                out[name] = out.get(name, 0.0) + delta * r
        for b_start, b_len, b_strength in benign:
            r = _bump(t, b_start, b_len) * b_strength
            for name, delta in profile.benign_change.items():
                out[name] = out.get(name, 0.0) + delta * r
        if profile.pathway == "post-operative":
            # Recovery: pain and HR settle over the first weeks after surgery (assumption).
            settle = np.exp(-t / (5 * DAY_S))
            out["wound_pain"] = out.get("wound_pain", 0.0) + 1.3 * settle
            out["heart_rate"] = out.get("heart_rate", 0.0) + 6.0 * settle
        if profile.pathway == "oncology":
            # Chemotherapy days 1–4 of each cycle: fatigue, nausea-related diarrhoea (benign).
            cyc = ((t / DAY_S) + cycle_phase) % 21
            chemo = np.where(cyc < 4, 1.0, 0.0)
            out["fatigue"] = out.get("fatigue", 0.0) + 1.2 * chemo
            out["diarrhoea"] = out.get("diarrhoea", 0.0) + 0.6 * chemo
        return out, ramp_max

    def in_hospital(t: np.ndarray) -> np.ndarray:
        inside = np.zeros(len(t), dtype=bool)
        for o, e in zip(onsets_s - start_s, adm_end_s - start_s, strict=True):
            inside |= (t >= o) & (t < e)
        return inside

    _, ramp_now = offsets(t_rel)
    # Sick patients skip measurements a little more often, or measure again in the evening.
    miss = rng.random(follow_up) < np.clip(p_miss + 0.1 * ramp_now, 0, 0.9)
    take = ~in_hospital(t_rel) & ~miss
    extra_t = t_rel + rng.uniform(8, 13, follow_up) * HOUR_S
    extra = (
        take
        & (rng.random(follow_up) < 0.35 * np.clip(ramp_now, 0, 1))
        & ~in_hospital(extra_t)
        & (extra_t < follow_up * DAY_S)
    )
    session_t = np.sort(np.concatenate([t_rel[take], extra_t[extra]]).astype(np.int64))
    delta, ramp = offsets(session_t.astype(np.float64))
    n = len(session_t)

    # --- device readings ---------------------------------------------------------------------
    def emit(channel: str, times: np.ndarray, values: np.ndarray, ids: list[str]) -> None:
        cols["patient"].extend([key] * len(times))
        cols["channel"].extend([channel] * len(times))
        cols["time_s"].extend((start_s + times).tolist())
        cols["value"].extend(values.tolist())
        cols["message_id"].extend(ids)

    values: dict[str, np.ndarray] = {}
    for ch in devices:
        if ch in ("systolic_bp",):
            continue
        b = base[ch]
        sd = profile.day_sd[ch] * (
            b
            if profile.pathway == "paediatric" and ch in ("heart_rate", "respiratory_rate")
            else 1.0
        )
        change = delta.get(ch, np.zeros(n))
        if ch in profile.relative_change:
            change = change * b
        values[ch] = b + change + rng.normal(0, sd, n)
    if "systolic_bp" in devices:
        sbp = (
            base["systolic_bp"]
            + delta.get("systolic_bp", np.zeros(n))
            + rng.normal(0, profile.day_sd["systolic_bp"], n)
        )
        values["systolic_bp"] = sbp
        values["diastolic_bp"] = sbp * rng.normal(0.62, 0.03) + rng.normal(0, 4, n)
    if "spo2" in values:
        # Cold fingers and movement give low misreads in ~2 % of home oximetry (assumption).
        misread = rng.random(n) < 0.02
        values["spo2"] = np.where(misread, values["spo2"] - rng.uniform(4, 12, n), values["spo2"])
        values["spo2"] = np.minimum(values["spo2"], 100.0)
    if "weight" in values:
        # Weighed in clothes now and then: +0.5–1.5 kg (assumption).
        clothes = rng.random(n) < 0.1
        values["weight"] = values["weight"] + np.where(clothes, rng.uniform(0.5, 1.5, n), 0.0)
    if "temperature" in values and profile.pathway in ("oncology", "post-operative"):
        # Fever caps physiologically; keep readings plausible.
        values["temperature"] = np.minimum(values["temperature"], 41.5)

    for ch, v in values.items():
        m = MEASUREMENTS[ch]
        res = _RESOLUTION[ch]
        v = np.clip(np.round(v / res) * res, m.plausible_min, m.plausible_max)
        values[ch] = np.round(v, 1)
    for ch, v in values.items():
        if ch == "diastolic_bp":
            continue
        present = rng.random(n) < 0.96  # one device forgotten now and then
        kind = "bp" if ch == "systolic_bp" else ch
        idx = np.flatnonzero(present)
        ids = [_message_id(seed, key, int(session_t[i]), kind) for i in idx]
        emit(ch, session_t[idx], v[idx], ids)
        if ch == "systolic_bp":
            emit("diastolic_bp", session_t[idx], values["diastolic_bp"][idx], ids)
        dup = idx[rng.random(len(idx)) < 0.03]  # re-sent after a lost acknowledgement
        if len(dup):
            dup_ids = [_message_id(seed, key, int(session_t[i]), kind) for i in dup]
            emit(ch, session_t[dup], v[dup], dup_ids)
            if ch == "systolic_bp":
                emit("diastolic_bp", session_t[dup], values["diastolic_bp"][dup], dup_ids)

    # --- questionnaire -----------------------------------------------------------------------
    options = scored_items(questionnaire)
    by_points = {link: {pts: code for code, pts in opts.items()} for link, opts in options.items()}
    item_level = {link: profile.item_baseline + rng.normal(0, 0.35) for link in options}
    unscored = {item["linkId"] for item in questionnaire["item"]}
    answered = rng.random(n) < 0.88
    first_of_day = (
        np.r_[True, (session_t[1:] // DAY_S) != (session_t[:-1] // DAY_S)]
        if n
        else np.zeros(0, bool)
    )
    for i in np.flatnonzero(answered & first_of_day | (answered & (ramp > 0.3))):
        t_i = int(session_t[i]) + int(rng.integers(60, 900))  # filled in after the measurements
        answers: dict[str, object] = {}
        for link, level in item_level.items():
            pts = level + float(delta.get(link, np.zeros(n))[i]) + rng.normal(0, 0.45)
            answers[link] = by_points[link][int(np.clip(round(pts), 0, 3))]
        if ON_OXYGEN in unscored:
            answers[ON_OXYGEN] = bool(ltot)
        if CONSCIOUSNESS in unscored:
            # New confusion in the last hours of a strong prodrome (sepsis, hypercapnia).
            confused = ramp[i] > 0.8 and rng.random() < 0.25 * ramp[i]
            answers[CONSCIOUSNESS] = "cvpu" if confused else "alert"
        score = score_answers(questionnaire, answers)
        msg = _message_id(seed, key, t_i, "qr")
        t_abs = start_s + t_i
        answer_sets.append(AnswerSet(key, t_abs, questionnaire["id"], answers, msg))
        derived: list[tuple[str, float]] = [(SYMPTOM_SCORE, score.symptom_score)]
        if ON_OXYGEN in score.values:
            derived.append((ON_OXYGEN, float(bool(score.values[ON_OXYGEN]))))
        if CONSCIOUSNESS in score.values:
            derived.append((CONSCIOUSNESS, float(score.values[CONSCIOUSNESS] == "cvpu")))
        for ch, derived_value in derived:
            emit(ch, np.array([t_i]), np.array([derived_value]), [msg])

    patient = SimPatient(
        key=key,
        pathway=profile.pathway,
        birth_date=birth,
        sex=sex,
        age_years=round(age, 2),
        comorbidities=comorbid,
        identifier=identifier,
        events=[start + timedelta(seconds=int(o - start_s)) for o in onsets_s],
        hypercapnic=hypercapnic,
        long_term_oxygen=ltot,
        follow_up_days=follow_up,
    )
    episodes = (
        [(int(start_s + o), float(length), float(strength)) for o, length, strength in prodromes],
        [(int(start_s + b), float(length), float(strength)) for b, length, strength in benign],
    )
    return patient, onsets_s, adm_end_s, episodes


# ---------------------------------------------------------------------------------------------
# Training rows


def _labels(
    cohort: Cohort, patient: np.ndarray, time_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Label (onset within (t, t+72 h]) and hours to the next onset (NaN if none)."""
    y = np.zeros(len(patient), dtype=np.int8)
    tte = np.full(len(patient), np.nan)
    for key in np.unique(patient):
        rows = np.flatnonzero(patient == key)
        onsets = np.sort(cohort.event_onset_s[key])
        if len(onsets) == 0:
            continue
        nxt = np.searchsorted(onsets, time_s[rows], side="right")
        has = nxt < len(onsets)
        wait = np.where(has, onsets[np.minimum(nxt, len(onsets) - 1)] - time_s[rows], -1)
        tte[rows] = np.where(has, wait / HOUR_S, np.nan)
        y[rows] = (has & (wait <= LABEL_HORIZON_S)).astype(np.int8)
    return y, tte


def snapshot_times(
    cohort: Cohort, history: History | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patient, reference time, trigger) per patient-day, as the service would score them.

    On a day with readings: at the day's newest reading (ingestion-triggered scoring); on a day
    without: at the end of the day (scheduled re-scoring). Days spent in hospital are skipped.
    """
    history = history if history is not None else cohort.history()
    start_s = cohort.start_s
    patients: list[np.ndarray] = []
    times: list[np.ndarray] = []
    triggers: list[np.ndarray] = []
    for p in cohort.patients:
        day_start = start_s + np.arange(p.follow_up_days, dtype=np.int64) * DAY_S
        mine = history.patient == p.key
        t, has_reading = patient_day_times(
            history.patient[mine],
            history.time_s[mine],
            np.full(len(day_start), p.key, dtype=np.int64),
            day_start,
        )
        inside = np.zeros(len(t), dtype=bool)
        for onset, end in zip(
            cohort.event_onset_s[p.key], cohort.admission_end_s[p.key], strict=True
        ):
            inside |= (t >= onset) & (t < end)
        keep = ~inside
        patients.append(np.full(int(keep.sum()), p.key, dtype=np.int64))
        times.append(t[keep])
        triggers.append(np.where(has_reading[keep], "reading", "scheduled"))
    return np.concatenate(patients), np.concatenate(times), np.concatenate(triggers)


def snapshot_dataset(
    cohort: Cohort, history: History | None = None
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Training rows (X, y, meta) via models.features.compute_features at serving-like times.

    ``meta`` is a pandas DataFrame: patient, pathway, age_years, age_band, sex, time_s, trigger,
    time_to_event_h (hours to the next onset, NaN if none in follow-up).
    """
    import pandas as pd

    history = history if history is not None else cohort.history()
    patient, time_s, trigger = snapshot_times(cohort, history)
    age0 = np.array([p.age_years for p in cohort.patients])
    age = age0[patient] + (time_s - cohort.start_s) / (365.25 * DAY_S)
    first = np.full(len(cohort.patients), cohort.start_s, dtype=np.int64)
    X, _ = compute_features(history, patient, time_s, age, first_reading_s=first[patient])
    y, tte = _labels(cohort, patient, time_s)
    bands = np.asarray(AGE_BAND_LABELS)[age_band(age).astype(int)]
    meta = pd.DataFrame(
        {
            "patient": patient,
            "pathway": np.array([cohort.patients[k].pathway for k in patient]),
            "age_years": age,
            "age_band": bands,
            "sex": np.array([cohort.patients[k].sex for k in patient]),
            "time_s": time_s,
            "trigger": trigger,
            "time_to_event_h": tte,
        }
    )
    return X, y.astype(np.int64), meta


# ---------------------------------------------------------------------------------------------
# FHIR

VKP_PROFILE_BASE = "http://hl7.no/fhir/StructureDefinition/"
VKP_PROFILES = {
    "heart_rate": VKP_PROFILE_BASE + "vkp-Observation-Heartrate",
    "respiratory_rate": VKP_PROFILE_BASE + "vkp-Observation-Resprate",
    "spo2": VKP_PROFILE_BASE + "vkp-Observation-Oxygensat",
    "temperature": VKP_PROFILE_BASE + "vkp-Observation-Bodytemp",
    "weight": VKP_PROFILE_BASE + "vkp-Observation-Bodyweight",
    "systolic_bp": VKP_PROFILE_BASE + "vkp-Observation-Bloodpressure",
    "glucose": VKP_PROFILE_BASE + "vkp-Observation-Glucose",
}
QUESTIONNAIRE_RESPONSE_PROFILE = (
    "http://ehelse.no/fhir/StructureDefinition/sdf-QuestionnaireResponse"
)
_VITAL_SIGNS = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
                "display": "Vital Signs",
            }
        ],
        "text": "Vital Signs",
    }
]
_QUESTIONNAIRE_CHANNELS = frozenset({SYMPTOM_SCORE, ON_OXYGEN, CONSCIOUSNESS})


def _iso(time_s: int) -> str:
    return datetime.fromtimestamp(int(time_s), UTC).isoformat()


def _code(name: str) -> dict[str, Any]:
    m = MEASUREMENTS[name]
    coding = [{"system": LOINC, "code": c, "display": m.label_en} for c in m.loinc[:1]]
    coding += [{"system": SNOMED, "code": c, "display": m.label_en} for c in m.snomed[:1]]
    return {"coding": coding, "text": m.label_nb}


def _quantity(name: str, value: float) -> dict[str, Any]:
    m = MEASUREMENTS[name]
    number: float | int = int(value) if _RESOLUTION.get(name) == 1.0 else round(float(value), 2)
    return {"value": number, "unit": m.unit_display, "system": UCUM, "code": m.unit}


def observation_resource(
    channel: str,
    value: float,
    time_s: int,
    message_id: str,
    subject: dict[str, Any],
    diastolic: float | None = None,
) -> dict[str, Any]:
    """One VKP-shaped Observation; systolic_bp becomes the 85354-9 panel with components."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"profile": [VKP_PROFILES[channel]]},
        "identifier": [{"system": MESSAGE_ID_SYSTEM, "value": message_id}],
        "status": "final",
        "category": _VITAL_SIGNS,
        "subject": subject,
        "effectiveDateTime": _iso(time_s),
        "performer": [subject],
        "device": {"display": _DEVICE_DISPLAY.get(channel, "Medisinsk utstyr")},
    }
    if channel == "systolic_bp":
        resource["code"] = {
            "coding": [
                {"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"},
                {"system": SNOMED, "code": "75367002", "display": "Blood pressure"},
            ],
            "text": "Blodtrykk",
        }
        resource["component"] = [
            {"code": _code("systolic_bp"), "valueQuantity": _quantity("systolic_bp", value)},
            {
                "code": _code("diastolic_bp"),
                "valueQuantity": _quantity("diastolic_bp", float(diastolic or 0.0)),
            },
        ]
    else:
        resource["code"] = _code(channel)
        resource["valueQuantity"] = _quantity(channel, value)
    return resource


def questionnaire_response_resource(
    answer_set: AnswerSet, subject: dict[str, Any]
) -> dict[str, Any]:
    questionnaire = load_questionnaire(answer_set.questionnaire_id)
    items = {item["linkId"]: item for item in questionnaire["item"]}
    out_items = []
    for link, answer in answer_set.answers.items():
        item = items[link]
        if isinstance(answer, bool):
            value: dict[str, Any] = {"valueBoolean": answer}
        else:
            coding = next(
                o["valueCoding"] for o in item["answerOption"] if o["valueCoding"]["code"] == answer
            )
            value = {"valueCoding": {k: coding[k] for k in ("system", "code", "display")}}
        out_items.append({"linkId": link, "text": item["text"], "answer": [value]})
    return {
        "resourceType": "QuestionnaireResponse",
        "meta": {"profile": [QUESTIONNAIRE_RESPONSE_PROFILE]},
        "identifier": {"system": MESSAGE_ID_SYSTEM, "value": answer_set.message_id},
        "questionnaire": f"{CANONICAL_BASE}{answer_set.questionnaire_id}|"
        f"{questionnaire['version']}",
        "status": "completed",
        "subject": subject,
        "authored": _iso(answer_set.time_s),
        "source": subject,
        "item": out_items,
    }


def cohort_to_fhir(
    cohort: Cohort, patient_reference: Callable[[SimPatient], dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Every message the cohort sent, in time order, as FHIR R4 resources (duplicates too)."""
    r = cohort.readings
    device = ~np.isin(r.channel, [*_QUESTIONNAIRE_CHANNELS, "diastolic_bp"])
    dia: dict[tuple[str, int], float] = {}
    for i in np.flatnonzero(r.channel == "diastolic_bp"):
        dia[(str(r.message_id[i]), int(r.time_s[i]))] = float(r.value[i])
    # Questionnaire duplicates are not simulated, answer sets are sent once each.
    events: list[tuple[int, int, int, int]] = [
        (int(r.time_s[i]), int(r.patient[i]), 0, int(i)) for i in np.flatnonzero(device)
    ]
    events += [(a.time_s, a.patient, 1, j) for j, a in enumerate(cohort.questionnaire_answers)]
    events.sort()
    refs: dict[int, dict[str, Any]] = {}
    for time_s, key, kind, idx in events:
        if key not in refs:
            refs[key] = patient_reference(cohort.patients[key])
        if kind == 0:
            ch = str(r.channel[idx])
            msg = str(r.message_id[idx])
            yield observation_resource(
                ch, float(r.value[idx]), time_s, msg, refs[key], dia.get((msg, time_s))
            )
        else:
            yield questionnaire_response_resource(cohort.questionnaire_answers[idx], refs[key])


def fhir_bundles(
    resources: Iterable[dict[str, Any]], batch_size: int = 100
) -> Iterator[dict[str, Any]]:
    """Group resources into FHIR batch Bundles of POST entries."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    entries: list[dict[str, Any]] = []
    for resource in resources:
        entries.append(
            {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
        )
        if len(entries) == batch_size:
            yield {"resourceType": "Bundle", "type": "batch", "entry": entries}
            entries = []
    if entries:
        yield {"resourceType": "Bundle", "type": "batch", "entry": entries}
