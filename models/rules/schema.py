"""The rule language: pathway, rule-set, rule and override documents as pydantic models.

Everything a clinician configures is one of these JSON documents. Unknown fields are refused
(``extra="forbid"``) so a typo never silently disables a rule. Structural checks live here;
clinical-sense checks (band gaps and overlaps, unknown measurements and units, red below
yellow, no red rule) live in :mod:`models.rules.validate`, which reports every problem at once
with its location instead of stopping at the first.

Band edges use explicit comparison keys so a chart can be copied exactly: ``{"le": 8}`` is
"≤ 8", ``{"gt": 8, "le": 11}`` is "9–11" for whole numbers, ``{"ge": 38.0}`` is "≥ 38.0".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

Op = Literal["<", "<=", ">", ">="]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,79}$")]
LevelId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
# A named operating point of the model (models/operating_points.py), e.g. "budget-2".
OperatingPointName = Annotated[str, Field(pattern=r"^(budget|sensitivity)-[0-9]{1,3}$")]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Band(_Doc):
    """One band of a value: lower edge ``gt``/``ge`` (none: unbounded), upper ``lt``/``le``."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    level: LevelId | None = None
    points: int = Field(default=0, ge=0, le=99)

    @model_validator(mode="after")
    def _one_edge_each_side(self) -> Band:
        if self.gt is not None and self.ge is not None:
            raise ValueError("a band has one lower edge: 'gt' or 'ge', not both")
        if self.lt is not None and self.le is not None:
            raise ValueError("a band has one upper edge: 'lt' or 'le', not both")
        return self

    @property
    def lower(self) -> tuple[float, bool] | None:
        """(edge, inclusive) or None when unbounded below."""
        if self.ge is not None:
            return (self.ge, True)
        if self.gt is not None:
            return (self.gt, False)
        return None

    @property
    def upper(self) -> tuple[float, bool] | None:
        if self.le is not None:
            return (self.le, True)
        if self.lt is not None:
            return (self.lt, False)
        return None

    def contains(self, value: float) -> bool:
        lo, hi = self.lower, self.upper
        if lo is not None and (value < lo[0] or (value == lo[0] and not lo[1])):
            return False
        return not (hi is not None and (value > hi[0] or (value == hi[0] and not hi[1])))


class BandTable(_Doc):
    """Bands that apply to an age range (``age_from_years`` ≤ age < ``age_below_years``)
    and, optionally, only on air (``on_oxygen: false``) or only on oxygen (``true``)."""

    age_from_years: float | None = Field(default=None, ge=0)
    age_below_years: float | None = Field(default=None, gt=0)
    on_oxygen: bool | None = None
    bands: list[Band] = Field(min_length=1)


class _RuleBase(_Doc):
    id: Slug
    enabled: bool = True
    # False: the rule only feeds scores or combinations; its own level does not set triage.
    triage: bool = True
    # Clinician's own wording of the condition; replaces the generated text unless a personal
    # threshold is in force (then the generated text shows the personal value).
    text_nb: str | None = Field(default=None, max_length=300)
    text_en: str | None = Field(default=None, max_length=300)
    source: str | None = Field(default=None, max_length=1000)


class _ThresholdRule(_RuleBase):
    """A value compared with one threshold per level: fires at the most severe level met."""

    op: Op
    thresholds: dict[LevelId, float] = Field(min_length=1)


class BandsRule(_RuleBase):
    """Absolute bands of the latest reading (points and/or a level per band), age-dependent."""

    type: Literal["bands"]
    measurement: str
    unit: str
    # Which side is abnormal: "low" (SpO2 on air), "high" or "both" (most vitals). Validation
    # refuses a table whose severity rises towards the normal side.
    direction: Literal["low", "high", "both"] = "both"
    bands: list[Band] | None = None
    tables: list[BandTable] | None = None

    @model_validator(mode="after")
    def _bands_or_tables(self) -> BandsRule:
        if (self.bands is None) == (self.tables is None):
            raise ValueError("give either 'bands' (one table for everyone) or 'tables', not both")
        return self

    def all_tables(self) -> list[BandTable]:
        return self.tables if self.tables is not None else [BandTable(bands=self.bands or [])]


class CategoryRule(_RuleBase):
    """Points and/or a level per category of a categorical value (air/oxygen, alert/CVPU)."""

    type: Literal["category"]
    measurement: str
    points: dict[str, int] = Field(default_factory=dict)
    levels: dict[str, LevelId] = Field(default_factory=dict)


class BaselineDeviationRule(_ThresholdRule):
    """Latest reading minus the personal baseline: in the unit, or in personal SDs."""

    type: Literal["baseline_deviation"]
    measurement: str
    unit: str
    mode: Literal["absolute", "sd"] = "absolute"
    window_days: float = Field(default=14, gt=0, le=90)
    # Readings this recent are left out of the baseline, so an acute change cannot hide itself.
    gap_hours: float = Field(default=24, ge=0, le=24 * 14)
    min_readings: int = Field(default=3, ge=2, le=100)


class ChangeRule(_ThresholdRule):
    """Latest reading minus the lowest (for a rise) or highest (for a fall) reading of the
    ``window_hours`` before it: "weight gain over 2 kg in 3 days"."""

    type: Literal["change"]
    measurement: str
    unit: str
    window_hours: float = Field(gt=0, le=24 * 30)


class ConsecutiveRule(_ThresholdRule):
    """The last ``count`` readings all meet the condition, all within ``window_hours``."""

    type: Literal["consecutive"]
    measurement: str
    unit: str
    count: int = Field(ge=2, le=20)
    window_hours: float = Field(gt=0, le=24 * 30)


class QuestionnaireRule(_ThresholdRule):
    """Latest answer to one scored item (0–3 points), or the total ``symptom_score`` (0–10)."""

    type: Literal["questionnaire"]
    questionnaire: Slug
    item: str


class MissedRule(_ThresholdRule):
    """Missed or overdue readings: expected-but-missing readings in the window (from the
    pathway schedule, or ``expected_per_day``), or hours since the last reading."""

    type: Literal["missed"]
    measurement: str
    measure: Literal["missed_readings", "hours_since_last"] = "missed_readings"
    window_hours: float = Field(default=72, gt=0, le=24 * 30)
    expected_per_day: float | None = Field(default=None, gt=0, le=48)


class CombinationRule(_RuleBase):
    """Fires when all (or any) of the named rules fired, at its own level."""

    type: Literal["combination"]
    require: Literal["all", "any"]
    rules: list[Slug] = Field(min_length=2)
    level: LevelId


class ScoreRule(_ThresholdRule):
    """Aggregate early-warning score: the sum (or the maximum) of the components' points."""

    type: Literal["score"]
    name: str = Field(min_length=1, max_length=40)  # display name, e.g. "NEWS2"
    components: list[Slug] = Field(min_length=1)
    aggregate: Literal["sum", "max"] = "sum"
    # Key in Evaluation.scores; defaults to the rule id.
    score_key: Slug | None = None


Rule = Annotated[
    BandsRule
    | CategoryRule
    | BaselineDeviationRule
    | ChangeRule
    | ConsecutiveRule
    | QuestionnaireRule
    | MissedRule
    | CombinationRule
    | ScoreRule,
    Field(discriminator="type"),
]
RULE_TYPES: tuple[str, ...] = (
    "bands",
    "category",
    "baseline_deviation",
    "change",
    "consecutive",
    "questionnaire",
    "missed",
    "combination",
    "score",
)
THRESHOLD_RULE_TYPES = (
    BaselineDeviationRule,
    ChangeRule,
    ConsecutiveRule,
    QuestionnaireRule,
    MissedRule,
    ScoreRule,
)


class LevelDef(_Doc):
    id: LevelId
    label_nb: str
    label_en: str


DEFAULT_LEVELS: tuple[LevelDef, ...] = (
    LevelDef(id="green", label_nb="Grønn", label_en="Green"),
    LevelDef(id="yellow", label_nb="Gul", label_en="Yellow"),
    LevelDef(id="red", label_nb="Rød", label_en="Red"),
)


class TriagePolicy(_Doc):
    """How rules and the model's probability make one level.

    The level is the most severe of: the most severe fired rule (with ``triage: true``), and
    the most severe level whose ``model_thresholds`` the model reaches (capped at
    ``model_max_level``). A threshold is the name of an operating point that the loaded model
    carries for this pathway (``"budget-2"``: at most 2 new alerts per 100 patient-days on
    validation; ``"sensitivity-80"``: finds 80 % of deteriorations), resolved whenever a model
    is loaded, or a bare probability. With {"yellow": "sensitivity-80", "red": "budget-2"}: any
    red rule → red; else the model at its budget-2 threshold → red; else any yellow rule or the
    model at sensitivity-80 → yellow; else green. Rules are the hard safety limits; the model
    gives the early warning and never lowers a level (models/operating_points.py).
    """

    model_thresholds: dict[LevelId, float | OperatingPointName] = Field(default_factory=dict)
    model_max_level: LevelId | None = None


class ScheduledMeasurement(_Doc):
    measurement: str
    unit: str
    per_day: float = Field(ge=0, le=48)  # expected readings per day (0: as needed)


Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class QuestionnaireSchedule(_Doc):
    """When the questionnaire is sent to the patient (through Helsenorge, as a FHIR Task).

    Every day, on named weekdays, or on named days after enrolment (day 1 = the day after), at
    ``send_at`` Norwegian time; the patient has ``window_hours`` to answer before it counts as
    missed (service/domain/questionnaire_tasks.py).
    """

    weekdays: list[Weekday] | None = Field(default=None, min_length=1, max_length=7)
    days_after_enrolment: list[Annotated[int, Field(ge=1, le=366)]] | None = Field(
        default=None, min_length=1, max_length=100
    )
    send_at: str = Field(default="08:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    window_hours: float = Field(default=12.0, gt=0, le=168)

    @model_validator(mode="after")
    def _one_rule(self) -> QuestionnaireSchedule:
        if self.weekdays is not None and self.days_after_enrolment is not None:
            raise ValueError("give weekdays or days_after_enrolment, not both")
        return self


class ScheduledQuestionnaire(_Doc):
    id: Slug
    per_day: float = Field(ge=0, le=48)
    # None: the questionnaire is not sent by the service (the patient answers on their own).
    schedule: QuestionnaireSchedule | None = None


class PathwayOption(_Doc):
    """A per-patient switch, e.g. confirmed hypercapnic failure → NEWS2 SpO2 scale 2."""

    id: Slug
    label_nb: str
    label_en: str
    default: bool = False
    replaces_rule_sets: dict[Slug, Slug] = Field(default_factory=dict)


class Editors(_Doc):
    """Who may publish a new version: roles, and units (empty: every unit)."""

    roles: list[str] = Field(min_length=1)
    units: list[str] = Field(default_factory=list)


class _Compiled(_Doc):
    """Base of documents the engine compiles once and caches on the instance."""

    _programs: dict[str, Any] = PrivateAttr(default_factory=dict)


class RuleSet(_Compiled):
    """Shared rules (NEWS2) that pathways include by id."""

    id: Slug
    version: int = Field(default=1, ge=1)
    title_nb: str
    title_en: str
    rules: list[Rule] = Field(min_length=1)
    sources: list[str] = Field(default_factory=list)


class Pathway(_Compiled):
    """A patient pathway: schedule, questionnaires, rules, levels, triage policy, model, editors."""

    id: Slug
    version: int = Field(default=1, ge=1)
    title_nb: str
    title_en: str
    description_nb: str | None = None
    description_en: str | None = None
    measurements: list[ScheduledMeasurement] = Field(default_factory=list)
    questionnaires: list[ScheduledQuestionnaire] = Field(default_factory=list)
    rule_sets: list[Slug] = Field(default_factory=list)
    options: list[PathwayOption] = Field(default_factory=list)
    levels: list[LevelDef] = Field(default_factory=lambda: list(DEFAULT_LEVELS), min_length=2)
    rules: list[Rule] = Field(default_factory=list)
    triage: TriagePolicy = Field(default_factory=TriagePolicy)
    model: str | None = None  # model artifact name, or None for rules only
    editors: Editors

    def with_model_thresholds(self, thresholds: dict[str, float | str]) -> Pathway:
        """A copy whose model thresholds are these (named points resolved to probabilities).

        The copy gets a program cache of its own: a shallow copy would share the original's,
        and run programs compiled with the unresolved names.
        """
        triage = self.triage.model_copy(update={"model_thresholds": dict(thresholds)})
        copy = self.model_copy(update={"triage": triage})
        copy._programs = {}
        return copy

    sources: list[str] = Field(default_factory=list)


class Override(_Doc):
    """A personal threshold for one patient: new thresholds (or bands) for one rule.

    Active from ``created_s`` until ``expires_s`` (epoch seconds); the fired text says who set
    it, when and why.
    """

    rule: Slug
    thresholds: dict[LevelId, float] | None = None
    bands: list[Band] | None = None
    reason: str = Field(min_length=1, max_length=300)
    author: str = Field(min_length=1, max_length=120)
    created_s: int
    expires_s: int

    @model_validator(mode="after")
    def _one_change(self) -> Override:
        if (self.thresholds is None) == (self.bands is None):
            raise ValueError("an override gives either 'thresholds' or 'bands'")
        if self.expires_s <= self.created_s:
            raise ValueError("'expires_s' must be after 'created_s'")
        return self

    def active(self, as_of_s: int) -> bool:
        return self.created_s <= as_of_s < self.expires_s
