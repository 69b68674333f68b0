"""Every configured rule in plain language, as a clinician reviewing a pathway reads it.

``describe_pathway(doc)`` lists the effective rules (rule sets resolved for the options) with
the meaning of the rule type, its unit, and one condition per level or band, each in bokmål
and English: "Vektøkning over 2 kg på 3 døgn → rød" / "Weight gain over 2 kg in 3 days → red".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.rules.catalogue import CATEGORY_SIGNALS, NUMERIC_SIGNALS
from models.rules.engine import _resolve_rules
from models.rules.schema import (
    DEFAULT_LEVELS,
    BandsRule,
    CategoryRule,
    CombinationRule,
    LevelDef,
    Pathway,
    QuestionnaireRule,
    RuleSet,
)
from models.rules.text import band_text, condition_text, label, number

RULE_TYPE_MEANING: dict[str, tuple[str, str]] = {
    "bands": (
        "Faste grenser for siste måling (kan avhenge av alder og oksygen)",
        "Absolute bands of the latest reading (may depend on age and oxygen)",
    ),
    "category": ("Poeng eller nivå per kategori", "Points or level per category"),
    "baseline_deviation": (
        "Siste måling mot pasientens egen baseline (median av de siste dagene, siste døgn "
        "holdt utenfor), i måleenheten eller i personlige standardavvik",
        "Latest reading against the patient's own baseline (median of recent days, the last "
        "day left out), in the measurement unit or in personal standard deviations",
    ),
    "change": (
        "Endring fra laveste (ved økning) eller høyeste (ved fall) måling i vinduet",
        "Change from the lowest (for a rise) or highest (for a fall) reading in the window",
    ),
    "consecutive": (
        "De siste målingene på rad oppfyller alle vilkåret innenfor vinduet",
        "The last readings in a row all meet the condition within the window",
    ),
    "questionnaire": (
        "Svar på spørreskjema: enkeltspørsmål (0–3 poeng) eller symptomskår (0–10)",
        "Questionnaire answer: one item (0–3 points) or the symptom score (0–10)",
    ),
    "missed": (
        "Manglende målinger mot planen, eller timer siden siste måling",
        "Readings missing against the schedule, or hours since the last reading",
    ),
    "combination": (
        "Slår til når alle (eller minst én) av de nevnte reglene slår til",
        "Fires when all (or any) of the named rules fire",
    ),
    "score": (
        "Samlet varslingsskår: summen (eller høyeste) av delpoengene",
        "Aggregate early-warning score: the sum (or the highest) of the part scores",
    ),
}


def _unit(rule: Any) -> str | None:
    if isinstance(rule, QuestionnaireRule):
        return "{score}" if rule.item == "symptom_score" else "{points}"
    if getattr(rule, "mode", None) == "sd":
        return "SD"
    measurement = getattr(rule, "measurement", None)
    if measurement in NUMERIC_SIGNALS:
        return NUMERIC_SIGNALS[measurement].unit if rule.type != "missed" else None
    if rule.type == "score":
        return "{points}"
    return None


def _level_label(levels: Mapping[str, LevelDef], level: str | None, lang: str) -> str | None:
    if level is None:
        return None
    spec = levels.get(level)
    if spec is None:
        return level
    return (spec.label_nb if lang == "nb" else spec.label_en).lower()


def _condition(
    text_nb: str, text_en: str, level: str | None, points: int, levels: Mapping[str, LevelDef]
) -> dict[str, Any]:
    def outcome(lang: str) -> str:
        parts = []
        label = _level_label(levels, level, lang)
        if label:
            parts.append(label)
        if points:
            word = "poeng" if lang == "nb" else ("point" if points == 1 else "points")
            parts.append(f"{points} {word}")
        return ", ".join(parts)

    out: dict[str, Any] = {"level": level, "points": points, "text_nb": text_nb, "text_en": text_en}
    if outcome("nb"):
        out["text_nb"] = f"{text_nb} → {outcome('nb')}"
        out["text_en"] = f"{text_en} → {outcome('en')}"
    return out


def describe_rule(rule: Any, levels: tuple[LevelDef, ...] = DEFAULT_LEVELS) -> dict[str, Any]:
    """One rule as data for a review screen: meaning, unit and one line per level or band."""
    by_id = {lv.id: lv for lv in levels}
    conditions: list[dict[str, Any]] = []
    if isinstance(rule, BandsRule):
        unit = (
            NUMERIC_SIGNALS[rule.measurement].unit_display
            if (rule.measurement in NUMERIC_SIGNALS)
            else ""
        )
        name = {lang: label(rule.measurement, lang) for lang in ("nb", "en")}
        for table in rule.all_tables():
            scope = _table_scope(table)
            for band in table.bands:
                if band.level is None and band.points == 0:
                    continue
                nb = f"{scope[0]}{name['nb']} {band_text(band, unit, 'nb')}"
                en = f"{scope[1]}{name['en']} {band_text(band, unit, 'en')}"
                conditions.append(_condition(nb, en, band.level, band.points, by_id))
    elif isinstance(rule, CategoryRule):
        spec = CATEGORY_SIGNALS.get(rule.measurement)
        for category in spec.categories if spec else ():
            level, points = rule.levels.get(category), rule.points.get(category, 0)
            if level is None and points == 0:
                continue
            extra = {"value": category}
            conditions.append(
                _condition(
                    condition_text(rule, None, "nb", extra),
                    condition_text(rule, None, "en", extra),
                    level,
                    points,
                    by_id,
                )
            )
    elif isinstance(rule, CombinationRule):
        parts = ", ".join(rule.rules)
        conditions.append(
            _condition(
                f"{condition_text(rule, None, 'nb', {})}: {parts}",
                f"{condition_text(rule, None, 'en', {})}: {parts}",
                rule.level,
                0,
                by_id,
            )
        )
    else:
        for level, threshold in sorted(
            rule.thresholds.items(),
            key=lambda kv: [lv.id for lv in levels].index(kv[0]) if kv[0] in by_id else 99,
        ):
            conditions.append(
                _condition(
                    condition_text(rule, threshold, "nb", {}),
                    condition_text(rule, threshold, "en", {}),
                    level,
                    0,
                    by_id,
                )
            )
    meaning_nb, meaning_en = RULE_TYPE_MEANING[rule.type]
    return {
        "rule": rule.id,
        "type": rule.type,
        "enabled": rule.enabled,
        "counts_for_triage": rule.triage,
        "meaning_nb": meaning_nb,
        "meaning_en": meaning_en,
        "unit": _unit(rule),
        "conditions": conditions,
        "custom_text_nb": rule.text_nb,
        "custom_text_en": rule.text_en,
        "source": rule.source,
    }


def _table_scope(table: Any) -> tuple[str, str]:
    nb: list[str] = []
    en: list[str] = []
    a_from, a_below = table.age_from_years, table.age_below_years
    if a_from and a_below is not None:
        nb.append(f"alder {number(a_from, 'nb')} til under {number(a_below, 'nb')} år")
        en.append(f"age {number(a_from, 'en')} to under {number(a_below, 'en')} years")
    elif a_below is not None:
        nb.append(f"under {number(a_below, 'nb')} år")
        en.append(f"under {number(a_below, 'en')} year{'' if a_below == 1 else 's'}")
    elif a_from:
        nb.append(f"alder {number(a_from, 'nb')} år og eldre")
        en.append(f"age {number(a_from, 'en')} years and over")
    if table.on_oxygen is not None:
        nb.append("på oksygen" if table.on_oxygen else "på luft")
        en.append("on oxygen" if table.on_oxygen else "on air")
    if not nb:
        return "", ""
    return ", ".join(nb).capitalize() + ": ", ", ".join(en).capitalize() + ": "


def describe_pathway(
    doc: Pathway | RuleSet, options: Mapping[str, bool] | None = None
) -> list[dict[str, Any]]:
    """Every effective rule of a pathway (its rule sets resolved for ``options``), described."""
    levels = tuple(doc.levels) if isinstance(doc, Pathway) else DEFAULT_LEVELS
    rules, _ = _resolve_rules(doc, options or {}, None)
    return [{**describe_rule(rule, levels), "origin": origin} for rule, origin in rules]
