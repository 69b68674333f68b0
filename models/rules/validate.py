"""Safety of edits: every problem of a draft pathway, each with its location.

``validate_pathway(draft)`` never raises on bad input: it returns a list of :class:`Problem`
(JSON-pointer ``path`` plus ``message``), empty for a draft that is safe to publish. It checks
structure (schema, unknown fields), measurement names and canonical units, band gaps and
overlaps, severity direction ("red below yellow"), references between rules, questionnaire
items, the triage policy, and that at least one enabled rule can raise the most severe level.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from models.measurements import LOINC, SNOMED, SYMPTOM_SCORE, measurement_for_code
from models.operating_points import SPEC_BY_NAME
from models.rules.catalogue import (
    CATEGORY_SIGNALS,
    ITEM_MAX_POINTS,
    NUMERIC_SIGNALS,
    QUESTIONNAIRE_ITEMS,
    redact,
)
from models.rules.schema import (
    RULE_TYPES,
    Band,
    BandsRule,
    BandTable,
    CategoryRule,
    CombinationRule,
    MissedRule,
    Override,
    Pathway,
    QuestionnaireRule,
    RuleSet,
    ScoreRule,
)


@dataclass(frozen=True)
class Problem:
    """One reason a draft cannot be published, at ``path`` (JSON pointer into the draft)."""

    path: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", redact(self.path))
        object.__setattr__(self, "message", redact(self.message))

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


def _pointer(loc: Iterable[Any]) -> str:
    parts: list[str] = []
    previous: Any = None
    for part in loc:
        # pydantic adds the discriminator value ("bands") to a tagged union's location
        if isinstance(part, str) and part in RULE_TYPES and isinstance(previous, int):
            previous = part
            continue
        parts.append(str(part).replace("~", "~0").replace("/", "~1"))
        previous = part
    return "/" + "/".join(parts)


def schema_problems(error: ValidationError, prefix: str = "") -> list[Problem]:
    return [Problem(prefix + _pointer(e["loc"]), e["msg"]) for e in error.errors()]


# ---------------------------------------------------------------------------------- checks


def _unit_problems(
    path: str, measurement: str, unit: str | None, numeric_only: bool
) -> list[Problem]:
    if measurement in NUMERIC_SIGNALS:
        canonical = NUMERIC_SIGNALS[measurement].unit
        if unit is not None and unit != canonical:
            return [
                Problem(
                    f"{path}/unit",
                    f"unit '{unit}' is not the canonical unit '{canonical}' of {measurement}",
                )
            ]
        return []
    if measurement in CATEGORY_SIGNALS and not numeric_only:
        return []
    known = (
        sorted(NUMERIC_SIGNALS) if numeric_only else sorted([*NUMERIC_SIGNALS, *CATEGORY_SIGNALS])
    )
    by_code = measurement_for_code(LOINC, measurement) or measurement_for_code(SNOMED, measurement)
    hint = (
        f"; '{measurement}' is the code of {by_code}: rules use the canonical name '{by_code}'"
        if by_code
        else f"; known: {', '.join(known)}"
    )
    return [Problem(f"{path}/measurement", f"unknown measurement '{measurement}'{hint}")]


def _edge_text(edge: tuple[float, bool] | None, side: str) -> str:
    if edge is None:
        return "unbounded"
    op = {("lower", True): "≥", ("lower", False): ">", ("upper", True): "≤", ("upper", False): "<"}[
        (side, edge[1])
    ]
    return f"{op} {edge[0]:g}"


def band_problems(
    path: str, bands: list[Band], ranks: Mapping[str, int], direction: str
) -> list[Problem]:
    """Bands must tile every value exactly once, low to high, with severity rising away
    from the normal range (only downwards for "low", only upwards for "high")."""
    out: list[Problem] = []
    for i, band in enumerate(bands):
        lo, hi = band.lower, band.upper
        if (
            lo is not None
            and hi is not None
            and (lo[0] > hi[0] or (lo[0] == hi[0] and not (lo[1] and hi[1])))
        ):
            out.append(
                Problem(f"{path}/{i}", "band is empty: its lower edge is above its upper edge")
            )
        if band.level is not None and band.level not in ranks:
            out.append(Problem(f"{path}/{i}/level", f"unknown level '{band.level}'"))
    first = bands[0].lower
    if first is not None:
        out.append(
            Problem(
                f"{path}/0", f"gap: values {'<' if first[1] else '≤'} {first[0]:g} fall in no band"
            )
        )
    if bands[-1].upper is not None:
        edge = bands[-1].upper
        out.append(
            Problem(
                f"{path}/{len(bands) - 1}",
                f"gap: values {'>' if edge[1] else '≥'} {edge[0]:g} fall in no band",
            )
        )
    for i in range(len(bands) - 1):
        hi, lo = bands[i].upper, bands[i + 1].lower
        where = f"{path}/{i + 1}"
        if hi is None:
            out.append(Problem(f"{path}/{i}", "overlap: only the last band may be unbounded above"))
            continue
        if lo is None:
            out.append(Problem(where, "overlap: only the first band may be unbounded below"))
            continue
        if lo[0] < hi[0] or (lo[0] == hi[0] and lo[1] and hi[1]):
            out.append(
                Problem(
                    where,
                    f"overlap with the band before: "
                    f"{_edge_text(hi, 'upper')} and {_edge_text(lo, 'lower')}",
                )
            )
        elif lo[0] > hi[0] or (not lo[1] and not hi[1]):
            out.append(
                Problem(
                    where,
                    f"gap after the band before: {_edge_text(hi, 'upper')} "
                    f"then {_edge_text(lo, 'lower')}",
                )
            )
    if out:
        return out
    severity = [ranks.get(b.level, 0) if b.level else 0 for b in bands]
    out.extend(_shape_problems(path, bands, severity, direction, ranks, "level"))
    out.extend(_shape_problems(path, bands, [b.points for b in bands], direction, ranks, "points"))
    return out


def _shape_problems(
    path: str,
    bands: list[Band],
    severity: list[int],
    direction: str,
    ranks: Mapping[str, int],
    what: str,
) -> list[Problem]:
    names = {r: lvl for lvl, r in ranks.items()}

    def show(i: int) -> str:
        return (
            f"'{names.get(severity[i], severity[i])}'"
            if what == "level"
            else (f"{severity[i]} points")
        )

    out = []
    if direction == "low":
        for i in range(len(bands) - 1):
            if severity[i + 1] > severity[i]:
                out.append(
                    Problem(
                        f"{path}/{i + 1}/{what}",
                        f"{what} rises from {show(i)} to "
                        f"{show(i + 1)} at higher values, but only low values are abnormal "
                        f"here (direction 'low')",
                    )
                )
        return out
    if direction == "high":
        for i in range(len(bands) - 1):
            if severity[i + 1] < severity[i]:
                out.append(
                    Problem(
                        f"{path}/{i}/{what}",
                        f"{what} {show(i)} sits below "
                        f"{show(i + 1)}, but only high values are abnormal here "
                        f"(direction 'high')",
                    )
                )
        return out
    # "both": severity falls to the normal range, then rises; a dip elsewhere means a more
    # severe band sits nearer normal than a milder one ("red below yellow").
    floor = min(range(len(severity)), key=lambda i: (severity[i], i))
    for i in range(floor):
        if severity[i] < severity[i + 1]:
            out.append(
                Problem(
                    f"{path}/{i + 1}/{what}",
                    f"{show(i + 1)} is nearer the normal range than the milder {show(i)} below it",
                )
            )
    for i in range(floor, len(severity) - 1):
        if severity[i + 1] < severity[i]:
            out.append(
                Problem(
                    f"{path}/{i}/{what}",
                    f"{show(i)} is nearer the normal range than the milder {show(i + 1)} above it",
                )
            )
    return out


def _age_problems(path: str, tables: list[BandTable]) -> list[Problem]:
    """For air and for oxygen, the tables that apply must cover every age exactly once."""
    out: list[Problem] = []
    for on_o2 in (False, True):
        applying = [(i, t) for i, t in enumerate(tables) if t.on_oxygen in (None, on_o2)]
        context = "on oxygen" if on_o2 else "on air"
        if not applying:
            out.append(Problem(path, f"no bands for patients {context}"))
            continue
        spans = sorted(
            (
                (
                    t.age_from_years or 0.0,
                    float("inf") if t.age_below_years is None else t.age_below_years,
                    i,
                )
                for i, t in applying
            )
        )
        edge = 0.0
        for start, stop, i in spans:
            if start > edge:
                out.append(
                    Problem(
                        f"{path}/{i}/age_from_years",
                        f"gapped age bands: no bands for ages {edge:g} to {start:g} "
                        f"years ({context})",
                    )
                )
            elif start < edge:
                out.append(
                    Problem(
                        f"{path}/{i}/age_from_years",
                        f"overlapping age bands: age {start:g} years is covered twice ({context})",
                    )
                )
            if stop <= start:
                out.append(Problem(f"{path}/{i}", "age band is empty"))
            edge = max(edge, stop)
        if edge != float("inf"):
            out.append(Problem(path, f"gapped age bands: no bands from {edge:g} years ({context})"))
    return list(dict.fromkeys(out))


def _threshold_problems(path: str, rule: Any, ranks: Mapping[str, int]) -> list[Problem]:
    out = []
    for level in rule.thresholds:
        if level not in ranks:
            out.append(Problem(f"{path}/thresholds/{level}", f"unknown level '{level}'"))
    known = sorted(((ranks[k], v, k) for k, v in rule.thresholds.items() if k in ranks))
    rising = rule.op in (">", ">=")
    for (_, v_low, k_low), (_, v_high, k_high) in itertools.pairwise(known):
        wrong = v_high < v_low if rising else v_high > v_low
        if wrong:
            relation = "below" if rising else "above"
            out.append(
                Problem(
                    f"{path}/thresholds/{k_high}",
                    f"'{k_high}' threshold {v_high:g} is {relation} the '{k_low}' "
                    f"threshold {v_low:g}: with '{rule.op}' the more severe level "
                    f"would fire first",
                )
            )
    return out


def _rule_problems(
    path: str,
    rule: Any,
    ranks: Mapping[str, int],
    doc: Pathway | None,
    all_rules: Mapping[str, Any],
) -> list[Problem]:
    out: list[Problem] = []
    kind = rule.type
    if kind in ("bands", "baseline_deviation", "change", "consecutive"):
        out += _unit_problems(path, rule.measurement, rule.unit, numeric_only=True)
    if kind in ("baseline_deviation", "change", "consecutive", "questionnaire", "missed", "score"):
        out += _threshold_problems(path, rule, ranks)
    if isinstance(rule, BandsRule) and rule.measurement in NUMERIC_SIGNALS:
        tables = rule.all_tables()
        base = f"{path}/bands" if rule.tables is None else f"{path}/tables"
        for ti, table in enumerate(tables):
            sub = base if rule.tables is None else f"{base}/{ti}/bands"
            out += band_problems(sub, table.bands, ranks, rule.direction)
        if rule.tables is not None:
            out += _age_problems(base, rule.tables)
    elif isinstance(rule, CategoryRule):
        spec = CATEGORY_SIGNALS.get(rule.measurement)
        if spec is None:
            out.append(
                Problem(
                    f"{path}/measurement",
                    f"'{rule.measurement}' is not "
                    f"categorical; categorical: {', '.join(sorted(CATEGORY_SIGNALS))}",
                )
            )
        else:
            for key in (*rule.points, *rule.levels):
                if key not in spec.categories:
                    out.append(
                        Problem(
                            f"{path}/points",
                            f"unknown category '{key}' of "
                            f"{rule.measurement}; known: {', '.join(spec.categories)}",
                        )
                    )
            for cat, level in rule.levels.items():
                if level not in ranks:
                    out.append(Problem(f"{path}/levels/{cat}", f"unknown level '{level}'"))
    elif isinstance(rule, QuestionnaireRule):
        items = QUESTIONNAIRE_ITEMS.get(rule.questionnaire)
        if items is None:
            out.append(
                Problem(f"{path}/questionnaire", f"unknown questionnaire '{rule.questionnaire}'")
            )
        elif rule.item != SYMPTOM_SCORE and rule.item not in items:
            out.append(
                Problem(
                    f"{path}/item",
                    f"unknown item '{rule.item}' in questionnaire "
                    f"'{rule.questionnaire}'; scored items: {', '.join(items)}, "
                    f"or {SYMPTOM_SCORE}",
                )
            )
        if (
            doc is not None
            and items is not None
            and rule.questionnaire not in {q.id for q in doc.questionnaires}
        ):
            out.append(
                Problem(
                    f"{path}/questionnaire",
                    f"questionnaire '{rule.questionnaire}' "
                    "is not sent in this pathway (add it under 'questionnaires')",
                )
            )
        top = 10 if rule.item == SYMPTOM_SCORE else ITEM_MAX_POINTS
        for level, value in rule.thresholds.items():
            if not 0 <= value <= top:
                out.append(
                    Problem(
                        f"{path}/thresholds/{level}",
                        f"{value:g} is outside the answer range 0–{top}",
                    )
                )
    elif isinstance(rule, MissedRule):
        out += _unit_problems(path, rule.measurement, None, numeric_only=False)
        if rule.op not in (">", ">="):
            out.append(
                Problem(
                    f"{path}/op",
                    "a missed-readings rule fires on more missed readings: use '>' or '>='",
                )
            )
        if rule.measure == "missed_readings" and rule.expected_per_day is None:
            per_day = {m.measurement: m.per_day for m in doc.measurements} if doc else {}
            if doc is not None:
                per_day[SYMPTOM_SCORE] = sum(q.per_day for q in doc.questionnaires)
            if not per_day.get(rule.measurement):
                out.append(
                    Problem(
                        f"{path}/expected_per_day",
                        f"no readings of {rule.measurement} are scheduled: give 'expected_per_day'",
                    )
                )
    elif isinstance(rule, CombinationRule | ScoreRule):
        refs = rule.rules if isinstance(rule, CombinationRule) else rule.components
        field = "rules" if isinstance(rule, CombinationRule) else "components"
        for j, ref in enumerate(refs):
            target = all_rules.get(ref)
            if ref == rule.id:
                out.append(Problem(f"{path}/{field}/{j}", "a rule cannot refer to itself"))
            elif target is None:
                out.append(Problem(f"{path}/{field}/{j}", f"unknown rule '{ref}'"))
            elif not target.enabled:
                out.append(Problem(f"{path}/{field}/{j}", f"rule '{ref}' is disabled"))
            elif isinstance(rule, ScoreRule) and not isinstance(target, BandsRule | CategoryRule):
                out.append(
                    Problem(
                        f"{path}/{field}/{j}",
                        f"score components give points: "
                        f"'{ref}' is a {target.type} rule, not bands or category",
                    )
                )
        if isinstance(rule, CombinationRule) and rule.level not in ranks:
            out.append(Problem(f"{path}/level", f"unknown level '{rule.level}'"))
    return out


def _can_raise(rule: Any, top: str) -> bool:
    if isinstance(rule, BandsRule):
        return any(b.level == top for t in rule.all_tables() for b in t.bands)
    if isinstance(rule, CategoryRule):
        return top in rule.levels.values()
    if isinstance(rule, CombinationRule):
        return rule.level == top
    return top in getattr(rule, "thresholds", {})


def _rules_problems(
    rules: list[tuple[str, Any]], ranks: Mapping[str, int], doc: Pathway | None
) -> list[Problem]:
    out: list[Problem] = []
    by_id: dict[str, Any] = {}
    for path, rule in rules:
        if rule.id in by_id:
            out.append(Problem(f"{path}/id", f"rule id '{rule.id}' is used twice"))
        by_id[rule.id] = rule
    for path, rule in rules:
        out += _rule_problems(path, rule, ranks, doc, by_id)
    out += _cycle_problems(rules, by_id)
    return out


def _cycle_problems(rules: list[tuple[str, Any]], by_id: Mapping[str, Any]) -> list[Problem]:
    def refs(rule: Any) -> list[str]:
        if isinstance(rule, CombinationRule):
            return list(rule.rules)
        return list(rule.components) if isinstance(rule, ScoreRule) else []

    out = []
    for path, rule in rules:
        seen, stack = set(), refs(rule)
        while stack:
            ref = stack.pop()
            if ref == rule.id:
                out.append(Problem(path, f"rule '{rule.id}' depends on itself through other rules"))
                break
            if ref in seen or ref not in by_id:
                continue
            seen.add(ref)
            stack.extend(refs(by_id[ref]))
    return out


def _level_problems(levels: list[Any]) -> list[Problem]:
    ids = [lv.id for lv in levels]
    return [
        Problem(f"/levels/{i}/id", f"level id '{lv}' is used twice")
        for i, lv in enumerate(ids)
        if lv in ids[:i]
    ]


def validate_pathway(
    draft: Mapping[str, Any] | Pathway, rule_sets: Mapping[str, RuleSet] | None = None
) -> list[Problem]:
    """Every problem of a draft pathway; empty when it is safe to publish.

    ``rule_sets`` are the rule sets it may include (default: the shipped ones).
    """
    if isinstance(draft, Pathway):
        doc = draft
    elif not isinstance(draft, Mapping):
        return [Problem("", "a pathway is a JSON object")]
    else:
        try:
            doc = Pathway.model_validate(dict(draft))
        except ValidationError as exc:
            return schema_problems(exc)
    ranks = {lv.id: i for i, lv in enumerate(doc.levels)}
    out = _level_problems(doc.levels)
    # Nobody may lock the clinicians out of their own pathway: administrators alone are not the
    # organisation's editors, and the four-eyes approval needs a clinician.
    if "clinician" not in doc.editors.roles:
        out.append(
            Problem(
                "/editors/roles",
                "editors.roles must include 'clinician': without it no clinician could change "
                "or approve this pathway",
            )
        )

    for i, m in enumerate(doc.measurements):
        out += _unit_problems(f"/measurements/{i}", m.measurement, m.unit, numeric_only=True)
    for i, q in enumerate(doc.questionnaires):
        if q.id not in QUESTIONNAIRE_ITEMS:
            out.append(
                Problem(
                    f"/questionnaires/{i}/id",
                    f"unknown questionnaire '{q.id}'; known: {', '.join(QUESTIONNAIRE_ITEMS)}",
                )
            )

    resolved = _rule_set_rules(doc, rule_sets, out)
    for j, (rs_path, rules) in enumerate(resolved):
        combined = [*rules, *((f"/rules/{i}", r) for i, r in enumerate(doc.rules))]
        problems = _rules_problems(combined, ranks, doc)
        # Problems inside a shipped rule set repeat for every variant; report each once.
        out += [p for p in problems if j == 0 or not p.path.startswith("/rules/")]
        top = doc.levels[-1].id
        enabled = [r for _, r in combined if r.enabled and r.triage and _can_raise(r, top)]
        if not enabled:
            any_top = [r for _, r in combined if _can_raise(r, top)]
            message = f"every '{top}' rule is disabled" if any_top else f"no rule can raise '{top}'"
            out.append(
                Problem(
                    "/rules",
                    f"{message}{rs_path}: a deteriorating patient could "
                    "never reach the most severe level",
                )
            )

    for level, p in doc.triage.model_thresholds.items():
        if level not in ranks:
            out.append(Problem(f"/triage/model_thresholds/{level}", f"unknown level '{level}'"))
        elif isinstance(p, str):
            if p not in SPEC_BY_NAME:
                out.append(
                    Problem(
                        f"/triage/model_thresholds/{level}",
                        f"unknown operating point '{p}' (known: {', '.join(SPEC_BY_NAME)})",
                    )
                )
        elif not 0.0 <= p <= 1.0:
            out.append(
                Problem(f"/triage/model_thresholds/{level}", f"probability {p:g} is outside 0–1")
            )
    # Bare probabilities must rise with severity; named points are checked when resolved.
    known = sorted(
        (ranks[k], v, k)
        for k, v in doc.triage.model_thresholds.items()
        if k in ranks and not isinstance(v, str)
    )
    for (_, p_low, k_low), (_, p_high, k_high) in itertools.pairwise(known):
        if p_high < p_low:
            out.append(
                Problem(
                    f"/triage/model_thresholds/{k_high}",
                    f"'{k_high}' needs probability {p_high:g}, below '{k_low}' "
                    f"at {p_low:g}: the more severe level would come first",
                )
            )
    if doc.triage.model_max_level is not None and doc.triage.model_max_level not in ranks:
        out.append(
            Problem("/triage/model_max_level", f"unknown level '{doc.triage.model_max_level}'")
        )
    return list(dict.fromkeys(out))


def _rule_set_rules(
    doc: Pathway, rule_sets: Mapping[str, RuleSet] | None, out: list[Problem]
) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The rule-set rules of each variant (default options, then each option switched on)."""
    from models.rules.library import load_rule_set

    def get(rs_id: str) -> RuleSet | None:
        if rule_sets is not None and rs_id in rule_sets:
            return rule_sets[rs_id]
        try:
            return load_rule_set(rs_id)
        except KeyError:
            return None

    for i, rs_id in enumerate(doc.rule_sets):
        if get(rs_id) is None:
            out.append(Problem(f"/rule_sets/{i}", f"unknown rule set '{rs_id}'"))
    for i, opt in enumerate(doc.options):
        for old, new in opt.replaces_rule_sets.items():
            if old not in doc.rule_sets:
                out.append(
                    Problem(
                        f"/options/{i}/replaces_rule_sets/{old}",
                        f"'{old}' is not one of this pathway's rule sets",
                    )
                )
            if get(new) is None:
                out.append(
                    Problem(f"/options/{i}/replaces_rule_sets/{old}", f"unknown rule set '{new}'")
                )

    variants: list[tuple[str, dict[str, str]]] = [("", {})]
    variants += [
        (f" (with option '{o.id}')", dict(o.replaces_rule_sets))
        for o in doc.options
        if o.replaces_rule_sets
    ]
    resolved = []
    for label, replacement in variants:
        rules: list[tuple[str, Any]] = []
        for i, rs_id in enumerate(doc.rule_sets):
            rs = get(replacement.get(rs_id, rs_id))
            if rs is not None:
                rules += [(f"/rule_sets/{i}", r) for r in rs.rules]
        resolved.append((label, rules))
    return resolved


def validate_rule_set(draft: Mapping[str, Any] | RuleSet) -> list[Problem]:
    """Every problem of a rule set on its own (levels green/yellow/red)."""
    if isinstance(draft, RuleSet):
        doc = draft
    else:
        try:
            doc = RuleSet.model_validate(dict(draft))
        except ValidationError as exc:
            return schema_problems(exc)
    ranks = {"green": 0, "yellow": 1, "red": 2}
    return _rules_problems([(f"/rules/{i}", r) for i, r in enumerate(doc.rules)], ranks, None)


def validate_override(
    pathway: Pathway,
    override: Mapping[str, Any] | Override,
    options: Mapping[str, bool] | None = None,
) -> list[Problem]:
    """Problems of a personal threshold for one patient on this pathway (empty: fine)."""
    if not isinstance(override, Override):
        try:
            override = Override.model_validate(dict(override))
        except ValidationError as exc:
            return schema_problems(exc)
    from models.rules.engine import CompileError, _apply_override, _resolve_rules

    ranks = {lv.id: i for i, lv in enumerate(pathway.levels)}
    rules = {r.id: r for r, _ in _resolve_rules(pathway, options or {}, None)[0]}
    rule = rules.get(override.rule)
    if rule is None:
        return [Problem("/rule", f"unknown rule '{override.rule}' in pathway '{pathway.id}'")]
    if getattr(rule, "mode", None) == "sd" and override.thresholds:
        # A deviation of 0 SD (or less) from the personal baseline fires on every reading.
        for level, value in override.thresholds.items():
            if value <= 0:
                return [
                    Problem(
                        f"/thresholds/{level}",
                        f"a threshold in standard deviations must be above 0 (got {value})",
                    )
                ]
    try:
        changed = _apply_override(rule, override)
    except CompileError as exc:
        return [Problem("/bands" if override.bands is not None else "/thresholds", str(exc))]
    return _rule_problems("", changed, ranks, pathway, rules)
