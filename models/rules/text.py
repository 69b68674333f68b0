"""Plain-language wording of rules and fired rules, in Norwegian bokmål and English.

A fired rule reads "<condition> (<what was measured>)", e.g. "Vektøkning over 2 kg på 3 døgn
(målt +2,4 kg)" / "Weight gain over 2 kg in 3 days (measured +2.4 kg)", followed by
"; personlig grense satt av … den …" when a personal threshold was in force.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

from models.rules.catalogue import (
    CATEGORY_SIGNALS,
    ITEM_LABELS,
    ITEM_MAX_POINTS,
    NUMERIC_SIGNALS,
)
from models.rules.schema import (
    Band,
    BandsRule,
    BaselineDeviationRule,
    CategoryRule,
    ChangeRule,
    CombinationRule,
    ConsecutiveRule,
    MissedRule,
    Override,
    QuestionnaireRule,
    ScoreRule,
)


@cache
def _local_tz() -> dt.tzinfo:
    """Norwegian local time for dates clinicians read; UTC where no tz database is installed."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Europe/Oslo")
    except Exception:  # pragma: no cover - depends on the host's tz database
        return dt.UTC


_OP_WORD = {
    "nb": {">": "over", ">=": "minst", "<": "under", "<=": "høyst"},
    "en": {">": "over", ">=": "at least", "<": "below", "<=": "at most"},
}
_TIMES = {"nb": {2: "to ganger", 3: "tre ganger"}, "en": {2: "twice", 3: "three times"}}


def number(value: float, lang: str, signed: bool = False) -> str:
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    text = text.rstrip("0").rstrip(".")
    if text in ("+0", "-0"):
        text = "0"
    return text.replace(".", ",") if lang == "nb" else text


def _quantity(value: float, unit: str, lang: str, signed: bool = False) -> str:
    return f"{number(value, lang, signed)} {unit}".rstrip()


def _unit(measurement: str) -> str:
    spec = NUMERIC_SIGNALS.get(measurement)
    return spec.unit_display if spec else ""


def label(measurement: str, lang: str) -> str:
    if measurement in NUMERIC_SIGNALS:
        spec = NUMERIC_SIGNALS[measurement]
        return spec.label_nb if lang == "nb" else spec.label_en
    if measurement in CATEGORY_SIGNALS:
        cat = CATEGORY_SIGNALS[measurement]
        return cat.label_nb if lang == "nb" else cat.label_en
    return measurement


def lower_first(text: str) -> str:
    return text if text[:4] == "SpO2" else text[:1].lower() + text[1:]


def duration(hours: float, lang: str) -> str:
    # "24 timer" reads better than "1 døgn"; whole days from two days up.
    if hours % 24 == 0 and hours >= 48:
        days = int(hours // 24)
        return f"{days} døgn" if lang == "nb" else f"{days} days"
    return f"{number(hours, lang)} timer" if lang == "nb" else f"{number(hours, lang)} h"


def band_text(band: Band, unit: str, lang: str) -> str:
    lo, hi = band.lower, band.upper
    parts = []
    if lo is not None:
        parts.append(f"{'≥' if lo[1] else '>'} {number(lo[0], lang)}")
    if hi is not None:
        parts.append(f"{'≤' if hi[1] else '<'} {number(hi[0], lang)}")
    joined = (" og " if lang == "nb" else " and ").join(parts) or (
        "alle verdier" if lang == "nb" else "any value"
    )
    return f"{joined} {unit}".rstrip()


def _threshold_phrase(op: str, threshold: float, unit: str, lang: str) -> str:
    return f"{_OP_WORD[lang][op]} {_quantity(threshold, unit, lang)}"


def condition_text(rule: Any, threshold: float | None, lang: str, extra: dict[str, Any]) -> str:
    """The condition as configured, with the threshold of the level that fired."""
    if isinstance(rule, BandsRule):
        band = extra["band"]
        return f"{label(rule.measurement, lang)} {band_text(band, _unit(rule.measurement), lang)}"
    if isinstance(rule, CategoryRule):
        cat = CATEGORY_SIGNALS[rule.measurement]
        idx = cat.categories.index(extra["value"])
        word = (cat.category_nb if lang == "nb" else cat.category_en)[idx]
        return f"{label(rule.measurement, lang)}: {word}"
    assert threshold is not None or isinstance(rule, CombinationRule)
    if isinstance(rule, ChangeRule):
        spec = NUMERIC_SIGNALS[rule.measurement]
        window = duration(rule.window_hours, lang)
        unit = spec.unit_display
        in_ = "på" if lang == "nb" else "in"
        if rule.op in (">", ">=") and threshold is not None and threshold >= 0:
            noun = spec.rise_nb if lang == "nb" else spec.rise_en
            return f"{noun} {_threshold_phrase(rule.op, threshold, unit, lang)} {in_} {window}"
        if rule.op in ("<", "<=") and threshold is not None and threshold <= 0:
            noun = spec.fall_nb if lang == "nb" else spec.fall_en
            flipped = {"<": ">", "<=": ">="}[rule.op]
            return f"{noun} {_threshold_phrase(flipped, -threshold, unit, lang)} {in_} {window}"
        change = "Endring i" if lang == "nb" else "Change in"
        return (
            f"{change} {lower_first(label(rule.measurement, lang))} "
            f"{_threshold_phrase(rule.op, threshold or 0.0, unit, lang)} {in_} {window}"
        )
    if isinstance(rule, ConsecutiveRule):
        times = _TIMES[lang].get(rule.count) or (
            f"{rule.count} ganger" if lang == "nb" else f"{rule.count} times"
        )
        in_ = "på" if lang == "nb" else "in"
        return (
            f"{label(rule.measurement, lang)} "
            f"{_threshold_phrase(rule.op, threshold or 0.0, _unit(rule.measurement), lang)} "
            f"{times} {in_} {duration(rule.window_hours, lang)}"
        )
    if isinstance(rule, BaselineDeviationRule):
        assert threshold is not None
        unit = "SD" if rule.mode == "sd" else _unit(rule.measurement)
        up = rule.op in (">", ">=")
        amount = _quantity(abs(threshold), unit, lang)
        if lang == "nb":
            side = "over" if up else "under"
            more = "mer enn" if rule.op in (">", "<") else "minst"
            return f"{label(rule.measurement, lang)} {more} {amount} {side} personlig baseline"
        side = "above" if up else "below"
        more = "more than" if rule.op in (">", "<") else "at least"
        return f"{label(rule.measurement, lang)} {more} {amount} {side} personal baseline"
    if isinstance(rule, QuestionnaireRule):
        if rule.item == "symptom_score":
            name = "Symptomskår" if lang == "nb" else "Symptom score"
        else:
            name = ITEM_LABELS.get(rule.item, (rule.item, rule.item))[0 if lang == "nb" else 1]
        points = "poeng" if lang == "nb" else "points"
        return f"{name}: {_OP_WORD[lang][rule.op]} {number(threshold or 0.0, lang)} {points}"
    if isinstance(rule, MissedRule):
        name = lower_first(label(rule.measurement, lang))
        if rule.measure == "hours_since_last":
            if lang == "nb":
                return (
                    f"Ingen måling av {name} på {_OP_WORD[lang][rule.op]} "
                    f"{number(threshold or 0.0, lang)} timer"
                )
            return (
                f"No {name} reading for {_OP_WORD[lang][rule.op]} "
                f"{number(threshold or 0.0, lang)} h"
            )
        window = duration(rule.window_hours, lang)
        if lang == "nb":
            return (
                f"{_OP_WORD[lang][rule.op].capitalize()} {number(threshold or 0.0, lang)} "
                f"manglende målinger av {name} siste {window}"
            )
        return (
            f"{_OP_WORD[lang][rule.op].capitalize()} {number(threshold or 0.0, lang)} "
            f"missed {name} readings in the last {window}"
        )
    if isinstance(rule, ScoreRule):
        if rule.aggregate == "max":
            if lang == "nb":
                return (
                    f"Enkeltparameter i {rule.name} med {_OP_WORD[lang][rule.op]} "
                    f"{number(threshold or 0.0, lang)} poeng"
                )
            return (
                f"Single {rule.name} parameter scoring {_OP_WORD[lang][rule.op]} "
                f"{number(threshold or 0.0, lang)}"
            )
        points = "poeng" if lang == "nb" else "points"
        return f"{rule.name} {_OP_WORD[lang][rule.op]} {number(threshold or 0.0, lang)} {points}"
    if isinstance(rule, CombinationRule):
        return (
            ("Samtidig" if lang == "nb" else "Together")
            if rule.require == "all"
            else ("Minst én av" if lang == "nb" else "At least one of")
        )
    raise TypeError(f"no wording for {type(rule).__name__}")


def observed_text(rule: Any, values: dict[str, Any], lang: str) -> str:
    """What was measured, in a few words."""
    measured = "målt" if lang == "nb" else "measured"
    if isinstance(rule, BandsRule | ConsecutiveRule | BaselineDeviationRule | ChangeRule):
        unit = _unit(rule.measurement)
    if isinstance(rule, BandsRule):
        return f"{measured} {_quantity(values['value'], unit, lang)}"
    if isinstance(rule, CategoryRule):
        return f"{measured} {values['value']}"
    if isinstance(rule, ChangeRule):
        return f"{measured} {_quantity(values['change'], unit, lang, signed=True)}"
    if isinstance(rule, ConsecutiveRule):
        joined = ", ".join(number(v, lang) for v in values["values"])
        return f"{measured} {joined} {unit}".rstrip()
    if isinstance(rule, BaselineDeviationRule):
        text = (
            f"{measured} {_quantity(values['value'], unit, lang)}, baseline "
            f"{_quantity(values['baseline'], unit, lang)}"
        )
        if rule.mode == "sd":
            text += f", {number(values['deviation_sd'], lang, signed=True)} SD"
        return text
    if isinstance(rule, QuestionnaireRule):
        top = 10 if rule.item == "symptom_score" else ITEM_MAX_POINTS
        return (
            f"svar {number(values['value'], lang)} av {top}"
            if lang == "nb"
            else f"answer {number(values['value'], lang)} of {top}"
        )
    if isinstance(rule, MissedRule):
        if rule.measure == "hours_since_last":
            hours = number(values["hours_since_last"], lang)
            return f"siste for {hours} timer siden" if lang == "nb" else f"last {hours} h ago"
        return (
            f"{values['missed']} av {values['expected']} mangler"
            if lang == "nb"
            else f"{values['missed']} of {values['expected']} missing"
        )
    if isinstance(rule, ScoreRule):
        if rule.aggregate == "max":
            return ", ".join(values.get("parameters_nb" if lang == "nb" else "parameters_en", []))
        word = "poeng" if lang == "nb" else "points"
        text = f"{values['score']} {word}"
        if values.get("missing"):
            text += ("; mangler " if lang == "nb" else "; missing ") + ", ".join(
                lower_first(label(m, lang)) for m in values["missing"]
            )
        return text
    if isinstance(rule, CombinationRule):
        return "; ".join(values.get("texts_nb" if lang == "nb" else "texts_en", []))
    return ""


def override_text(override: Override, lang: str) -> str:
    day = dt.datetime.fromtimestamp(override.created_s, tz=_local_tz()).date()
    if lang == "nb":
        return (
            f"personlig grense satt av {override.author} den {day.strftime('%d.%m.%Y')}: "
            f"{override.reason}"
        )
    return f"personal threshold set by {override.author} on {day.isoformat()}: {override.reason}"


def fired_text(
    rule: Any,
    threshold: float | None,
    values: dict[str, Any],
    extra: dict[str, Any],
    override: Override | None,
    lang: str,
    condition: str | None = None,
) -> str:
    """The full sentence for a fired rule in one language (``condition`` if precomputed)."""
    if condition is None:
        condition = condition_for(rule, threshold, extra, override, lang)
    observed = observed_text(rule, values, lang)
    text = f"{condition} ({observed})" if observed else condition
    if override is not None:
        text += f"; {override_text(override, lang)}"
    return text


def condition_for(
    rule: Any, threshold: float | None, extra: dict[str, Any], override: Override | None, lang: str
) -> str:
    """The clinician's own wording if given (and no personal threshold), else generated."""
    custom = rule.text_nb if lang == "nb" else rule.text_en
    if custom and override is None:
        return str(custom)
    return condition_text(rule, threshold, lang, extra)
