"""Compiling a pathway into a program, and evaluating it for one patient.

A pathway (or a rule set on its own) compiles once into a :class:`Program`: its rule sets
resolved for the patient's options, personal overrides applied, levels turned into ranks and
rules put in dependency order (components before scores, parts before combinations). The
program is cached on the pathway object, so a second patient with the same options and
overrides costs only the evaluation.

The single-patient path here is plain Python (tens of µs); :mod:`models.rules.batch` is the
numpy path for thousands of patients. Both produce each rule's raw outcome in the same shape
and share :func:`outcome_values`, so a patient gets the same :class:`Evaluation` either way.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.measurements import ON_OXYGEN
from models.rules.catalogue import (
    CATEGORY_SIGNALS,
    DAY_S,
    HOUR_S,
    LATEST_LOOKBACK_S,
    NUMERIC_SIGNALS,
    item_signal,
    redact,
)
from models.rules.readings import PatientReadings, ReadingsError
from models.rules.schema import (
    DEFAULT_LEVELS,
    BandsRule,
    BaselineDeviationRule,
    CategoryRule,
    ChangeRule,
    CombinationRule,
    ConsecutiveRule,
    LevelDef,
    MissedRule,
    Override,
    Pathway,
    QuestionnaireRule,
    RuleSet,
    ScoreRule,
    TriagePolicy,
)
from models.rules.text import condition_for, fired_text, label, lower_first, number

# A robust personal SD: 1.4826 × median absolute deviation equals the SD for normal data and
# ignores the odd device error; medians are also bit-reproducible between the two paths.
MAD_TO_SD = 1.4826
_MAX_CACHED_PROGRAMS = 512


class CompileError(ValueError):
    """A document that passed the schema but cannot run (validate_pathway explains why)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


@dataclass
class CompiledRule:
    rule: Any
    origin: str  # rule-set id, or "pathway"
    override: Override | None
    signal: str | None
    # (rank, threshold, level id), most severe first
    thresholds: list[tuple[int, float, str]] = field(default_factory=list)
    deps: list[int] = field(default_factory=list)  # program indices of components / parts
    level_rank: int = 0  # combination level
    # bands: per table (age_from, age_below, on_oxygen, [(lo, lo_incl, hi, hi_incl, rank, pts)])
    tables: list[tuple[Any, ...]] = field(default_factory=list)
    cat_points: list[int] = field(default_factory=list)
    cat_ranks: list[int] = field(default_factory=list)
    expected: int = 0  # missed readings expected in the window
    id: str = ""
    type: str = ""
    triage: bool = True
    # Condition wording depends only on the rule and the band or threshold that fired: rendered
    # once per (language, band/threshold) and reused, which keeps fired texts cheap.
    conditions: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = str(self.rule.id)
        self.type = str(self.rule.type)
        self.triage = bool(self.rule.triage)


@dataclass
class Program:
    """A pathway resolved for one combination of patient options and overrides."""

    pathway: str
    pathway_version: int
    pathway_hash: str
    rule_sets: dict[str, int]
    levels: tuple[LevelDef, ...]
    rules: list[CompiledRule]
    model_thresholds: list[tuple[int, float]]  # (rank, p), most severe first
    model_max_rank: int
    options: dict[str, bool]
    overrides: tuple[Override, ...]
    latest_signals: tuple[str, ...]  # signals whose current value some rule needs
    score_slots: tuple[tuple[int, str], ...] = ()  # (rule index, key in Evaluation.scores)

    def level_id(self, rank: int) -> str:
        return self.levels[rank].id


# ---------------------------------------------------------------------------------- compile


def _ranks(levels: Sequence[LevelDef]) -> dict[str, int]:
    return {lv.id: i for i, lv in enumerate(levels)}


def _thresholds(rule: Any, ranks: dict[str, int]) -> list[tuple[int, float, str]]:
    out = []
    for level, value in rule.thresholds.items():
        if level not in ranks:
            raise CompileError(f"rule '{rule.id}': unknown level '{level}'")
        out.append((ranks[level], float(value), level))
    return sorted(out, key=lambda x: -x[0])


def _signal(rule: Any) -> str | None:
    if isinstance(rule, QuestionnaireRule):
        return (
            "symptom_score"
            if rule.item == "symptom_score"
            else item_signal(rule.questionnaire, rule.item)
        )
    return getattr(rule, "measurement", None)


def _apply_override(rule: Any, override: Override) -> Any:
    if override.bands is not None:
        if not isinstance(rule, BandsRule):
            raise CompileError(f"override of '{rule.id}': bands only replace a bands rule")
        return rule.model_copy(update={"bands": list(override.bands), "tables": None})
    if not hasattr(rule, "thresholds"):
        raise CompileError(f"override of '{rule.id}': this rule type has no thresholds")
    return rule.model_copy(update={"thresholds": dict(override.thresholds or {})})


def _resolve_rules(
    doc: Pathway | RuleSet, options: Mapping[str, bool], rule_sets: Mapping[str, RuleSet] | None
) -> tuple[list[tuple[Any, str]], dict[str, int]]:
    if isinstance(doc, RuleSet):
        return [(r, doc.id) for r in doc.rules], {doc.id: doc.version}
    from models.rules.library import load_rule_set  # lazy: reading shipped files is I/O

    replacement: dict[str, str] = {}
    for opt in doc.options:
        if options.get(opt.id, opt.default):
            replacement.update(opt.replaces_rule_sets)
    rules: list[tuple[Any, str]] = []
    used: dict[str, int] = {}
    for rs_id in doc.rule_sets:
        rs_id = replacement.get(rs_id, rs_id)
        rs = (rule_sets or {}).get(rs_id) or load_rule_set(rs_id)
        used[rs.id] = rs.version
        rules.extend((r, rs.id) for r in rs.rules)
    rules.extend((r, "pathway") for r in doc.rules)
    return rules, used


def compile_program(
    doc: Pathway | RuleSet,
    options: Mapping[str, bool] | None = None,
    overrides: Sequence[Override] = (),
    rule_sets: Mapping[str, RuleSet] | None = None,
) -> Program:
    """Resolve rule sets, options and overrides into a runnable program (uncached)."""
    from models.rules.store import pathway_hash

    options = dict(options or {})
    levels = tuple(doc.levels) if isinstance(doc, Pathway) else DEFAULT_LEVELS
    policy = doc.triage if isinstance(doc, Pathway) else TriagePolicy()
    ranks = _ranks(levels)
    resolved, used = _resolve_rules(doc, options, rule_sets)
    by_override = {o.rule: o for o in overrides}
    known = {r.id for r, _ in resolved}
    for o in overrides:
        if o.rule not in known:
            raise CompileError(f"override refers to unknown rule '{o.rule}'")

    compiled: dict[str, CompiledRule] = {}
    pending: list[tuple[Any, str]] = []
    for rule, origin in resolved:
        if rule.id in compiled or any(rule.id == r.id for r, _ in pending):
            raise CompileError(f"rule id '{rule.id}' is used twice")
        if not rule.enabled:
            continue
        override = by_override.get(rule.id)
        if override is not None:
            rule = _apply_override(rule, override)
        pending.append((rule, origin))

    schedule: dict[str, float] = {}
    if isinstance(doc, Pathway):
        schedule = {m.measurement: m.per_day for m in doc.measurements}
        schedule["symptom_score"] = sum(q.per_day for q in doc.questionnaires)

    order: list[CompiledRule] = []
    position: dict[str, int] = {}
    enabled_ids = {r.id for r, _ in pending}
    while pending:
        progressed = False
        rest = []
        for rule, origin in pending:
            refs = list(getattr(rule, "components", None) or getattr(rule, "rules", None) or [])
            if isinstance(rule, CombinationRule | ScoreRule) and any(
                r in enabled_ids and r not in compiled for r in refs
            ):
                rest.append((rule, origin))
                continue
            cr = _compile_rule(rule, origin, by_override.get(rule.id), ranks, schedule)
            cr.deps = [position[r] for r in refs if r in compiled]
            for r in refs:
                if r not in known:
                    raise CompileError(f"rule '{rule.id}' refers to unknown rule '{r}'")
            compiled[rule.id] = cr
            position[rule.id] = len(order)
            order.append(cr)
            progressed = True
        if not progressed:
            raise CompileError(
                "rules refer to each other in a cycle: " + ", ".join(r.id for r, _ in rest)
            )
        pending = rest

    # A named operating point still unresolved (no model carries it) cannot raise a level:
    # the service resolves names against the loaded model before evaluating.
    model_thresholds = sorted(
        (
            (ranks[k], float(p))
            for k, p in policy.model_thresholds.items()
            if k in ranks and not isinstance(p, str)
        ),
        key=lambda x: -x[0],
    )
    latest_signals = tuple(
        sorted(
            {
                cr.signal
                for cr in order
                if cr.signal
                and isinstance(
                    cr.rule, BandsRule | CategoryRule | QuestionnaireRule | BaselineDeviationRule
                )
            }
        )
    )
    return Program(
        pathway=doc.id,
        pathway_version=doc.version,
        pathway_hash=pathway_hash(doc),
        rule_sets=used,
        levels=levels,
        rules=order,
        model_thresholds=model_thresholds,
        model_max_rank=ranks.get(policy.model_max_level or "", len(levels) - 1),
        options={o.id: bool(options.get(o.id, o.default)) for o in doc.options}
        if isinstance(doc, Pathway)
        else {},
        overrides=tuple(overrides),
        latest_signals=latest_signals,
        score_slots=tuple(
            (i, cr.rule.score_key or cr.id)
            for i, cr in enumerate(order)
            if isinstance(cr.rule, ScoreRule)
        ),
    )


def _compile_rule(
    rule: Any,
    origin: str,
    override: Override | None,
    ranks: dict[str, int],
    schedule: Mapping[str, float],
) -> CompiledRule:
    cr = CompiledRule(rule=rule, origin=origin, override=override, signal=_signal(rule))
    if isinstance(rule, BandsRule):
        for table in rule.all_tables():
            bands = []
            for b in table.bands:
                if b.level is not None and b.level not in ranks:
                    raise CompileError(f"rule '{rule.id}': unknown level '{b.level}'")
                lo, hi = b.lower, b.upper
                bands.append(
                    (
                        None if lo is None else lo[0],
                        bool(lo and lo[1]),
                        None if hi is None else hi[0],
                        bool(hi and hi[1]),
                        ranks[b.level] if b.level else 0,
                        b.points,
                    )
                )
            cr.tables.append((table.age_from_years, table.age_below_years, table.on_oxygen, bands))
    elif isinstance(rule, CategoryRule):
        cats = CATEGORY_SIGNALS[rule.measurement].categories
        cr.cat_points = [int(rule.points.get(c, 0)) for c in cats]
        for lvl in rule.levels.values():
            if lvl not in ranks:
                raise CompileError(f"rule '{rule.id}': unknown level '{lvl}'")
        cr.cat_ranks = [ranks[rule.levels[c]] if c in rule.levels else 0 for c in cats]
    elif isinstance(rule, CombinationRule):
        if rule.level not in ranks:
            raise CompileError(f"rule '{rule.id}': unknown level '{rule.level}'")
        cr.level_rank = ranks[rule.level]
    else:
        cr.thresholds = _thresholds(rule, ranks)
    if isinstance(rule, MissedRule) and rule.measure == "missed_readings":
        per_day = rule.expected_per_day or schedule.get(rule.measurement, 0.0)
        cr.expected = round(per_day * rule.window_hours / 24.0)
    return cr


def program_for(
    doc: Pathway | RuleSet,
    options: Mapping[str, bool] | None = None,
    overrides: Sequence[Override] = (),
) -> Program:
    """The cached program of a document for these patient options and active overrides."""
    option_ids = {o.id for o in doc.options} if isinstance(doc, Pathway) else set()
    for name in options or {}:
        if name not in option_ids:
            raise ReadingsError(f"unknown pathway option '{name}' for '{doc.id}'")
    key = repr(sorted((options or {}).items()))
    if overrides:
        key += "|" + "|".join(o.model_dump_json() for o in overrides)
    cache = doc._programs
    program = cache.get(key)
    if program is None:
        if len(cache) >= _MAX_CACHED_PROGRAMS:
            cache.clear()
        program = compile_program(doc, options, overrides)
        cache[key] = program
    return program


# ---------------------------------------------------------------------------------- outcomes


def meets(value: Any, op: str, threshold: float) -> Any:
    """value <op> threshold, for a float (single path) or an array (batch path) alike."""
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    return value <= threshold


def threshold_rank(cr: CompiledRule, value: float) -> int:
    op = cr.rule.op
    for rank, threshold, _ in cr.thresholds:
        if meets(value, op, threshold):
            return rank
    return 0


def threshold_for(cr: CompiledRule, rank: int) -> float | None:
    for r, threshold, _ in cr.thresholds:
        if r == rank:
            return threshold
    return None


def outcome_values(
    program: Program, i: int, raw: tuple[Any, ...], raws: Sequence[tuple[Any, ...] | None]
) -> dict[str, Any]:
    """The JSON-ready values behind rule ``i``'s outcome (``raw[0]`` is its rank)."""
    cr = program.rules[i]
    rule = cr.rule
    unit = NUMERIC_SIGNALS[cr.signal].unit if cr.signal in NUMERIC_SIGNALS else None
    rank = raw[0]
    thr = threshold_for(cr, rank)
    if isinstance(rule, BandsRule):
        _, points, t, v, _, _ = raw
        return {"measurement": cr.signal, "value": v, "unit": unit, "time_s": t, "points": points}
    if isinstance(rule, CategoryRule):
        _, points, t, code = raw
        cats = CATEGORY_SIGNALS[rule.measurement].categories
        return {"measurement": cr.signal, "value": cats[int(code)], "time_s": t, "points": points}
    if isinstance(rule, BaselineDeviationRule):
        _, t, v, baseline, dev, z = raw
        out = {
            "measurement": cr.signal,
            "value": v,
            "unit": unit,
            "time_s": t,
            "baseline": baseline,
            "deviation": dev,
            "threshold": thr,
            "mode": rule.mode,
        }
        if rule.mode == "sd":
            out["deviation_sd"] = z
        return out
    if isinstance(rule, ChangeRule):
        _, t, v, ref, change = raw
        return {
            "measurement": cr.signal,
            "value": v,
            "unit": unit,
            "time_s": t,
            "reference": ref,
            "change": change,
            "window_hours": rule.window_hours,
            "threshold": thr,
        }
    if isinstance(rule, ConsecutiveRule):
        _, times, values = raw
        return {
            "measurement": cr.signal,
            "values": list(values),
            "times_s": list(times),
            "unit": unit,
            "threshold": thr,
        }
    if isinstance(rule, QuestionnaireRule):
        _, t, v = raw
        return {
            "questionnaire": rule.questionnaire,
            "item": rule.item,
            "value": v,
            "time_s": t,
            "threshold": thr,
        }
    if isinstance(rule, MissedRule):
        _, metric, expected, received = raw
        if rule.measure == "hours_since_last":
            return {"measurement": cr.signal, "hours_since_last": metric, "threshold": thr}
        return {
            "measurement": cr.signal,
            "missed": int(metric),
            "expected": expected,
            "received": received,
            "window_hours": rule.window_hours,
            "threshold": thr,
        }
    if isinstance(rule, ScoreRule):
        components: dict[str, int] = {}
        missing: list[str] = []
        top: list[tuple[CompiledRule, tuple[Any, ...]]] = []
        for d in cr.deps:
            dep, dep_raw = program.rules[d], raws[d]
            if dep_raw is None:
                missing.append(str(dep.signal))
                continue
            components[dep.id] = int(dep_raw[1])
            if rule.aggregate == "max" and dep_raw[1] == raw[1] and dep_raw[1] > 0:
                top.append((dep, dep_raw))
        out = {"score": raw[1], "threshold": thr, "components": components, "missing": missing}
        if rule.aggregate == "max":
            out["parameters_nb"] = [_parameter_text(d, r, "nb") for d, r in top]
            out["parameters_en"] = [_parameter_text(d, r, "en") for d, r in top]
        return out
    if isinstance(rule, CombinationRule):
        fired = [(d, r) for d in cr.deps if (r := raws[d]) is not None and r[0] > 0]
        return {
            "rules": [program.rules[d].id for d, _ in fired],
            "texts_nb": [_fired_sentence(program, d, r, raws, "nb") for d, r in fired],
            "texts_en": [_fired_sentence(program, d, r, raws, "en") for d, r in fired],
        }
    raise TypeError(type(rule).__name__)


def _parameter_text(cr: CompiledRule, raw: tuple[Any, ...], lang: str) -> str:
    name = lower_first(label(str(cr.signal), lang))
    if isinstance(cr.rule, CategoryRule):
        return f"{name} {CATEGORY_SIGNALS[cr.rule.measurement].categories[int(raw[3])]}"
    unit = NUMERIC_SIGNALS[str(cr.signal)].unit_display
    return f"{name} {number(raw[3], lang)} {unit}".rstrip()


def _extra(cr: CompiledRule, raw: tuple[Any, ...]) -> dict[str, Any]:
    if isinstance(cr.rule, BandsRule):
        return {"band": cr.rule.all_tables()[raw[4]].bands[raw[5]]}
    if isinstance(cr.rule, CategoryRule):
        return {"value": CATEGORY_SIGNALS[cr.rule.measurement].categories[int(raw[3])]}
    return {}


def _fired_sentence(
    program: Program,
    i: int,
    raw: tuple[Any, ...],
    raws: Sequence[tuple[Any, ...] | None],
    lang: str,
) -> str:
    cr = program.rules[i]
    values = outcome_values(program, i, raw, raws)
    return fired_text(
        cr.rule, threshold_for(cr, raw[0]), values, _extra(cr, raw), cr.override, lang
    )


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FiredRule:
    """One rule that fired: what, how severe, in words, on which values, personal or not."""

    rule: str
    type: str
    level: str
    origin: str
    text_nb: str
    text_en: str
    values: dict[str, Any]
    override: dict[str, Any] | None
    triage: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "type": self.type,
            "level": self.level,
            "origin": self.origin,
            "text_nb": self.text_nb,
            "text_en": self.text_en,
            "values": self.values,
            "override": self.override,
            "counts_for_triage": self.triage,
        }


@dataclass(frozen=True)
class Evaluation:
    """The result for one patient: level, scores, fired rules and the exact versions used."""

    level: str
    level_rank: int
    decided_by: str  # "rules" | "model" | "rules+model" | "none"
    rule_level: str
    model_level: str | None
    model_probability: float | None
    scores: dict[str, int | None]
    fired: tuple[FiredRule, ...]
    pathway: str
    pathway_version: int
    pathway_hash: str
    rule_sets: dict[str, int]
    options: dict[str, bool]
    overrides_applied: tuple[dict[str, Any], ...]
    overrides_ignored: tuple[dict[str, Any], ...]
    missing: tuple[str, ...]
    as_of_s: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; what the dry-run endpoint returns and an assessment stores."""
        return {
            "level": self.level,
            "decided_by": self.decided_by,
            "rule_level": self.rule_level,
            "model_level": self.model_level,
            "model_probability": self.model_probability,
            "scores": dict(self.scores),
            "fired": [f.to_dict() for f in self.fired],
            "pathway": self.pathway,
            "pathway_version": self.pathway_version,
            "pathway_hash": self.pathway_hash,
            "rule_sets": dict(self.rule_sets),
            "options": dict(self.options),
            "overrides_applied": list(self.overrides_applied),
            "overrides_ignored": list(self.overrides_ignored),
            "missing": list(self.missing),
            "as_of_s": self.as_of_s,
        }


def override_info(o: Override) -> dict[str, Any]:
    return {
        "rule": o.rule,
        "thresholds": o.thresholds,
        "bands": None
        if o.bands is None
        else [b.model_dump(exclude_defaults=True) for b in o.bands],
        "reason": o.reason,
        "author": o.author,
        "created_s": o.created_s,
        "expires_s": o.expires_s,
    }


def check_probability(p: float | None) -> float | None:
    if p is None:
        return None
    p = float(p)
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ValueError(f"model_probability must be within 0–1, got {p}")
    return p


def assemble(
    program: Program,
    raws: Sequence[tuple[Any, ...] | None],
    p: float | None,
    as_of_s: int,
    missing: Sequence[str],
    ignored: Sequence[Override],
) -> Evaluation:
    """Combine rule outcomes and the model probability into an :class:`Evaluation`."""
    fired: list[tuple[int, int, FiredRule]] = []
    rule_rank = 0
    scores: dict[str, int | None] = {
        key: None if (raw := raws[i]) is None else int(raw[1]) for i, key in program.score_slots
    }
    for i, raw in enumerate(raws):
        if raw is None or raw[0] <= 0:
            continue
        cr = program.rules[i]
        rank = int(raw[0])
        if cr.triage:
            rule_rank = max(rule_rank, rank)
        values = outcome_values(program, i, raw, raws)
        threshold = threshold_for(cr, rank)
        extra = _extra(cr, raw)
        texts = []
        for lang in ("nb", "en"):
            slot = (
                lang,
                threshold,
                raw[4:6] if cr.type == "bands" else raw[3:4] if cr.type == "category" else (),
            )
            condition = cr.conditions.get(slot)
            if condition is None:
                condition = condition_for(cr.rule, threshold, extra, cr.override, lang)
                cr.conditions[slot] = condition
            texts.append(
                fired_text(cr.rule, threshold, values, extra, cr.override, lang, condition)
            )
        fired.append(
            (
                -rank,
                i,
                FiredRule(
                    rule=cr.id,
                    type=cr.type,
                    level=program.level_id(rank),
                    origin=cr.origin,
                    text_nb=texts[0],
                    text_en=texts[1],
                    values=values,
                    override=None if cr.override is None else override_info(cr.override),
                    triage=cr.triage,
                ),
            )
        )
    model_rank: int | None = None
    if p is not None:
        model_rank = 0
        for rank, threshold in program.model_thresholds:
            if p >= threshold:
                model_rank = min(rank, program.model_max_rank)
                break
    rank = max(rule_rank, model_rank or 0)
    if rank == 0:
        decided_by = "none"
    elif model_rank is not None and model_rank == rule_rank:
        decided_by = "rules+model"
    else:
        decided_by = "rules" if rule_rank == rank else "model"
    fired.sort(key=lambda x: (x[0], x[1]))
    return Evaluation(
        level=program.level_id(rank),
        level_rank=rank,
        decided_by=decided_by,
        rule_level=program.level_id(rule_rank),
        model_level=None if model_rank is None else program.level_id(model_rank),
        model_probability=p,
        scores=scores,
        fired=tuple(f for _, _, f in fired),
        pathway=program.pathway,
        pathway_version=program.pathway_version,
        pathway_hash=program.pathway_hash,
        rule_sets=dict(program.rule_sets),
        options=dict(program.options),
        overrides_applied=tuple(override_info(o) for o in program.overrides),
        overrides_ignored=tuple(
            {**override_info(o), "why": "expired or not yet valid"} for o in ignored
        ),
        missing=tuple(missing),
        as_of_s=as_of_s,
    )


# ---------------------------------------------------------------------------------- single path


class _Patient:
    """Per-evaluation view of one patient's readings with memoised current values."""

    __slots__ = ("age", "as_of", "enrolled", "latest_cache", "series")

    def __init__(self, readings: PatientReadings) -> None:
        self.series = readings.series
        self.as_of = readings.as_of_s
        self.age = readings.age_years
        self.enrolled = readings.enrolled_s
        self.latest_cache: dict[str, tuple[int, float] | None] = {}

    def latest(self, signal: str) -> tuple[int, float] | None:
        if signal in self.latest_cache:
            return self.latest_cache[signal]
        found = None
        s = self.series.get(signal)
        if s is not None:
            end = bisect_right(s[0], self.as_of)
            if end and s[0][end - 1] >= self.as_of - LATEST_LOOKBACK_S:
                found = (s[0][end - 1], s[1][end - 1])
        self.latest_cache[signal] = found
        return found


def _median(values: list[float]) -> float:
    s = sorted(values)
    k = len(s)
    return (s[(k - 1) // 2] + s[k // 2]) / 2.0


def _eval_bands(cr: CompiledRule, pt: _Patient) -> tuple[Any, ...] | None:
    cur = pt.latest(str(cr.signal))
    if cur is None:
        return None
    t, v = cur
    oxygen = pt.latest(ON_OXYGEN)
    on_o2 = oxygen is not None and oxygen[1] == 1.0
    age = pt.age
    for ti, (a_from, a_below, o2, bands) in enumerate(cr.tables):
        if o2 is not None and o2 != on_o2:
            continue
        if a_from is not None and (age is None or age < a_from):
            continue
        if a_below is not None and (age is None or age >= a_below):
            continue
        for bi, (lo, lo_incl, hi, hi_incl, rank, points) in enumerate(bands):
            if lo is not None and (v < lo or (v == lo and not lo_incl)):
                continue
            if hi is not None and (v > hi or (v == hi and not hi_incl)):
                continue
            return (rank, points, t, v, ti, bi)
        return None
    return None


def _eval_category(cr: CompiledRule, pt: _Patient) -> tuple[Any, ...] | None:
    cur = pt.latest(str(cr.signal))
    if cur is None:
        return None
    code = int(cur[1])
    return (cr.cat_ranks[code], cr.cat_points[code], cur[0], cur[1])


def _eval_baseline(cr: CompiledRule, pt: _Patient) -> tuple[Any, ...] | None:
    rule: BaselineDeviationRule = cr.rule
    cur = pt.latest(str(cr.signal))
    if cur is None:
        return None
    times, values = pt.series[str(cr.signal)]
    start = bisect_left(times, pt.as_of - int(rule.window_days * DAY_S))
    stop = bisect_left(times, pt.as_of - int(rule.gap_hours * HOUR_S))
    window = values[start:stop]
    if len(window) < rule.min_readings:
        return None
    baseline = _median(window)
    dev = cur[1] - baseline
    z = math.nan
    metric = dev
    if rule.mode == "sd":
        mad = _median([abs(x - baseline) for x in window])
        sd = max(MAD_TO_SD * mad, NUMERIC_SIGNALS[str(cr.signal)].sd_floor)
        z = dev / sd
        metric = z
    return (threshold_rank(cr, metric), cur[0], cur[1], baseline, dev, z)


def _eval_change(cr: CompiledRule, pt: _Patient) -> tuple[Any, ...] | None:
    rule: ChangeRule = cr.rule
    s = pt.series.get(str(cr.signal))
    cur = pt.latest(str(cr.signal))
    if cur is None or s is None:
        return None
    times, values = s
    end = bisect_right(times, pt.as_of)
    start = bisect_left(times, cur[0] - int(rule.window_hours * HOUR_S))
    window = values[start : end - 1]
    if not window:
        return None
    ref = min(window) if rule.op in (">", ">=") else max(window)
    change = cur[1] - ref
    return (threshold_rank(cr, change), cur[0], cur[1], ref, change)


def _eval_consecutive(cr: CompiledRule, pt: _Patient) -> tuple[Any, ...] | None:
    rule: ConsecutiveRule = cr.rule
    s = pt.series.get(str(cr.signal))
    if s is None or pt.latest(str(cr.signal)) is None:
        return None
    times, values = s
    end = bisect_right(times, pt.as_of)
    start = end - rule.count
    if start < 0 or times[start] < pt.as_of - int(rule.window_hours * HOUR_S):
        return (0, (), ())
    last_t, last_v = tuple(times[start:end]), tuple(values[start:end])
    rank = 0
    for r, threshold, _ in cr.thresholds:
        if all(meets(v, rule.op, threshold) for v in last_v):
            rank = r
            break
    return (rank, last_t, last_v)


def _eval_questionnaire(cr: CompiledRule, pt: _Patient) -> tuple[Any, ...] | None:
    cur = pt.latest(str(cr.signal))
    if cur is None:
        return None
    return (threshold_rank(cr, cur[1]), cur[0], cur[1])


def _eval_missed(cr: CompiledRule, pt: _Patient) -> tuple[Any, ...] | None:
    rule: MissedRule = cr.rule
    times = pt.series.get(str(cr.signal), ([], []))[0]
    end = bisect_right(times, pt.as_of)
    if rule.measure == "hours_since_last":
        if end:
            since = times[end - 1]
        elif pt.enrolled is not None:
            since = pt.enrolled
        else:
            return None
        hours = (pt.as_of - since) / HOUR_S
        return (threshold_rank(cr, hours), hours, 0, 0)
    window_start = pt.as_of - int(rule.window_hours * HOUR_S)
    if pt.enrolled is not None and pt.enrolled > window_start:
        return None  # enrolled within the window: too early to call readings missed
    received = end - bisect_right(times, window_start)
    missed = float(max(0, cr.expected - received))
    return (threshold_rank(cr, missed), missed, cr.expected, received)


def _eval_score(cr: CompiledRule, raws: list[tuple[Any, ...] | None]) -> tuple[Any, ...] | None:
    points = [int(raws[d][1]) for d in cr.deps if raws[d] is not None]  # type: ignore[index]
    if not points:
        return None
    score = max(points) if cr.rule.aggregate == "max" else sum(points)
    return (threshold_rank(cr, score), score)


def _eval_combination(cr: CompiledRule, raws: list[tuple[Any, ...] | None]) -> tuple[Any, ...]:
    fired = [raws[d] is not None and raws[d][0] > 0 for d in cr.deps]  # type: ignore[index]
    complete = len(cr.deps) == len(cr.rule.rules)
    hit = (all(fired) and complete) if cr.rule.require == "all" else any(fired)
    return (cr.level_rank if hit else 0,)


_SINGLE = {
    "bands": _eval_bands,
    "category": _eval_category,
    "baseline_deviation": _eval_baseline,
    "change": _eval_change,
    "consecutive": _eval_consecutive,
    "questionnaire": _eval_questionnaire,
    "missed": _eval_missed,
}


def run_single(
    program: Program, readings: PatientReadings, p: float | None, ignored: Sequence[Override] = ()
) -> Evaluation:
    """Evaluate a compiled program for one patient."""
    pt = _Patient(readings)
    raws: list[tuple[Any, ...] | None] = []
    for cr in program.rules:
        kind = cr.type
        if kind == "score":
            raws.append(_eval_score(cr, raws))
        elif kind == "combination":
            raws.append(_eval_combination(cr, raws))
        else:
            raws.append(_SINGLE[kind](cr, pt))
    missing = [s for s in program.latest_signals if pt.latest(s) is None]
    return assemble(program, raws, p, readings.as_of_s, missing, ignored)
