"""Plain-language explanations of a score, in Norwegian (bokmål) and English.

The explanation is the model: the contributions are the additive model's exact terms, so
``intercept + pathway_baseline + Σ factor contributions == logit``. Features whose measurement is
not part of the patient's pathway (weight for a COPD patient) are structurally missing; their
constant terms are reported together as the pathway baseline instead of as "missing data".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.features import AGE_BAND_LABELS, FEATURES, FeatureDef
from models.measurements import MEASUREMENTS, SYMPTOM_SCORE

# Units as a clinician reads them; SpO2 differences are percentage points.
_DELTA_UNIT = {"%": ("prosentpoeng", "points")}
_SINGULAR = {"points": "point", "days": "day", "hours": "hour"}
_CHANNEL_LABEL = {name: (m.label_nb, m.label_en) for name, m in MEASUREMENTS.items()}
_CHANNEL_LABEL["spo2"] = ("SpO2", "SpO2")
_CHANNEL_LABEL[SYMPTOM_SCORE] = ("Symptomskår", "Symptom score")


@dataclass
class Factor:
    feature: str
    contribution: float  # on the logit scale; > 0 raises the risk
    value: float | None
    text_nb: str
    text_en: str

    @property
    def direction(self) -> str:
        return "raises" if self.contribution > 0 else "lowers"

    def as_dict(self) -> dict[str, object]:
        return {
            "feature": self.feature,
            "contribution": round(self.contribution, 6),
            "value": self.value,
            "direction": self.direction,
            "text_nb": self.text_nb,
            "text_en": self.text_en,
        }


@dataclass
class Explanation:
    intercept: float
    pathway_baseline: float  # sum of terms of measurements the pathway does not use
    logit: float
    probability: float
    factors: list[Factor] = field(default_factory=list)  # every non-structural term, largest first

    def top(self, n: int = 3, min_abs: float = 0.05) -> list[Factor]:
        return [f for f in self.factors[:n] if abs(f.contribution) >= min_abs]

    def as_dict(self, n_top: int = 5) -> dict[str, object]:
        return {
            "intercept": self.intercept,
            "pathway_baseline": self.pathway_baseline,
            "logit": self.logit,
            "probability": self.probability,
            "contributions": {f.feature: f.contribution for f in self.factors},
            "top_factors": [f.as_dict() for f in self.top(n_top)],
        }


def _num(x: float, lang: str, decimals: int = 1) -> str:
    text = f"{x:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{x:.0f}"
    return text.replace(".", ",") if lang == "nb" else text


def _days(hours: float | None, lang: str) -> str:
    if hours is None:
        return "aldri målt" if lang == "nb" else "never measured"
    days = hours / 24.0
    if days < 1.5:
        return f"{_num(hours, lang, 0)} timer" if lang == "nb" else f"{_num(hours, lang, 0)} hours"
    return f"{_num(days, lang, 0)} døgn" if lang == "nb" else f"{_num(days, lang, 0)} days"


def _missing_text(f: FeatureDef, ctx: dict[str, float | None], lang: str) -> str:
    if f.channel is None:  # adherence features are missing only before the first reading
        return "ingen målinger ennå" if lang == "nb" else "no measurements yet"
    label = _CHANNEL_LABEL[f.channel][0 if lang == "nb" else 1]
    since = ctx.get("hours_since_last")
    if f.kind == "latest":
        if since is None:
            return f"ingen {label} målt" if lang == "nb" else f"no {label} measured"
        return (
            f"ingen {label} siste {_days(since, lang)}"
            if lang == "nb"
            else f"no {label} for {_days(since, lang)}"
        )
    if f.kind == "delta_baseline":
        return (
            f"{label}: personlig baseline ikke etablert ennå"
            if lang == "nb"
            else f"{label}: personal baseline not yet established"
        )
    if f.kind == "slope_7d":
        return (
            f"{label}: for få målinger siste 7 døgn til en trend"
            if lang == "nb"
            else f"{label}: too few readings in 7 days for a trend"
        )
    if f.kind == "sd_3d":
        return (
            f"{label}: for få målinger siste 3 døgn til å se svingninger"
            if lang == "nb"
            else f"{label}: too few readings in 3 days to see it swing"
        )
    window = "1 døgn" if f.kind == "change_1d" else "3 døgn"
    window_en = "1 day" if f.kind == "change_1d" else "3 days"
    return (
        f"{label}: ingen måling å sammenligne med for {window} siden"
        if lang == "nb"
        else f"{label}: no reading from {window_en} ago to compare with"
    )


def _value_text(f: FeatureDef, value: float, ctx: dict[str, float | None], lang: str) -> str:
    nb = lang == "nb"
    if f.kind == "missed_days":
        n = int(value)
        if n == 0:
            return (
                "målinger hvert døgn de siste 3 døgnene"
                if nb
                else "measurements on each of the last 3 days"
            )
        return (
            f"ingen målinger {n} av de siste 3 døgnene"
            if nb
            else f"no measurements on {n} of the last 3 days"
        )
    if f.kind == "hours_since":
        return (
            f"siste måling for {_days(value, lang)} siden"
            if nb
            else f"last measurement {_days(value, lang)} ago"
        )
    if f.kind == "age_band":
        band = AGE_BAND_LABELS[int(value)] if 0 <= int(value) < len(AGE_BAND_LABELS) else "?"
        return f"aldersgruppe {band} år" if nb else f"age group {band} years"
    channel = f.channel or ""
    label = _CHANNEL_LABEL[channel][0 if nb else 1]
    unit = f.unit
    if f.kind == "latest":
        suffix = "/10" if channel == SYMPTOM_SCORE else f" {unit}"
        return f"{label} {_num(value, lang)}{suffix}"
    if f.kind == "slope_7d":
        per_day = _num(abs(value), lang, 2)
        base_unit = unit.removesuffix("/d")
        if per_day in ("0", "0,0", "0.0"):
            return f"{label} stabil siste 7 døgn" if nb else f"{label} steady over 7 days"
        verb = (
            ("stiger" if value > 0 else "faller") if nb else ("rising" if value > 0 else "falling")
        )
        return (
            f"{label} {verb} {per_day} {base_unit} per døgn siste 7 døgn"
            if nb
            else f"{label} {verb} {per_day} {base_unit} a day over 7 days"
        )
    if f.kind == "sd_3d":
        return (
            f"{label} svinger (SD {_num(value, lang, 2)} {unit} siste 3 døgn)"
            if nb
            else f"{label} swings (SD {_num(value, lang, 2)} {unit} over 3 days)"
        )
    delta_unit = _DELTA_UNIT.get(unit, (unit, unit))[0 if nb else 1]
    shown = _num(abs(value), lang)
    if shown == "1" and not nb:
        delta_unit = _SINGULAR.get(delta_unit, delta_unit)
    amount = f"{shown} {delta_unit}"
    if f.kind == "delta_baseline" and shown == "0":
        return f"{label} på personlig baseline" if nb else f"{label} at personal baseline"
    if f.kind == "delta_baseline":
        latest, base = ctx.get("latest"), ctx.get("baseline")
        where = ("over" if value > 0 else "under") if nb else ("above" if value > 0 else "below")
        text = (
            f"{label} {amount} {where} personlig baseline"
            if nb
            else f"{label} {amount} {where} personal baseline"
        )
        if latest is not None and base is not None:
            vs = "mot" if nb else "vs"
            text += f" ({_num(latest, lang)} {unit} {vs} {_num(base, lang)} {unit})"
        return text
    window = (
        ("siste døgn" if nb else "in 1 day")
        if f.kind == "change_1d"
        else ("siste 3 døgn" if nb else "in 3 days")
    )
    if shown == "0":
        return f"{label} uendret {window}" if nb else f"{label} unchanged {window}"
    verb = ("steg" if value > 0 else "falt") if nb else ("rose" if value > 0 else "fell")
    return f"{label} {verb} {amount} {window}"


def explain(
    x: np.ndarray,
    contributions: np.ndarray,
    intercept: float,
    logit: float,
    probability: float,
    context: dict[str, dict[str, float | None]],
    pathway_channels: set[str] | None = None,
) -> Explanation:
    """Build the explanation for one scored row.

    ``context`` is FeatureContext.row(i); ``pathway_channels`` the measurements the patient's
    pathway collects (None: treat all as expected).
    """
    structural = 0.0
    factors: list[Factor] = []
    for j, f in enumerate(FEATURES):
        c = float(contributions[j])
        value = None if np.isnan(x[j]) else float(x[j])
        expected = f.channel is None or pathway_channels is None or f.channel in pathway_channels
        if value is None and not expected:
            structural += c
            continue
        ctx = context.get(f.channel or "", {})
        if value is None:
            nb, en = _missing_text(f, ctx, "nb"), _missing_text(f, ctx, "en")
        else:
            nb, en = _value_text(f, value, ctx, "nb"), _value_text(f, value, ctx, "en")
        factors.append(Factor(f.name, c, value, nb[:1].upper() + nb[1:], en[:1].upper() + en[1:]))
    factors.sort(key=lambda fa: abs(fa.contribution), reverse=True)
    return Explanation(float(intercept), structural, float(logit), float(probability), factors)
