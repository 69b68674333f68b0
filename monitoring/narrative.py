"""A drift report in plain words, in English, bokmål and nynorsk: what changed, how much, since
when, where, the likely kind of change, what to do next and who should do it.

Built from the report's JSON alone (so a stored report can be re-read), with the measurements'
and features' own labels: code names appear only in the technical appendix of the report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from models.features import FEATURES
from models.measurements import MEASUREMENTS

LANGUAGES = ("en", "nb", "nn")
_FEATURE = {f.name: f for f in FEATURES}
# Nynorsk labels where they differ from bokmål (the catalogue in models/ has en and nb only).
_NN_WORDS = (
    ("avvik fra personlig baseline", "avvik frå personleg baseline"),
    ("endring siste døgn", "endring siste døgeret"),
    ("endring siste 3 døgn", "endring siste 3 døgera"),
    ("Vektendring siste døgn", "Vektendring siste døgeret"),
    ("Vektendring siste 3 døgn", "Vektendring siste 3 døgera"),
    ("Dager uten målinger siste 3 døgn", "Dagar utan målingar siste 3 døgera"),
    ("Timer siden siste måling", "Timar sidan siste måling"),
    ("Symptomskår", "Symptomskår"),
)

VERDICT_WORDS = {
    "ok": {"en": "No drift", "nb": "Ingen drift", "nn": "Ingen drift"},
    "warning": {"en": "Possible drift", "nb": "Mulig drift", "nn": "Mogleg drift"},
    "drift": {"en": "Drift", "nb": "Drift", "nn": "Drift"},
}
SEVERITY_WORDS = {
    "none": {"en": "none", "nb": "ingen", "nn": "ingen"},
    "low": {"en": "low", "nb": "lav", "nn": "låg"},
    "moderate": {"en": "moderate", "nb": "moderat", "nn": "moderat"},
    "high": {"en": "high", "nb": "høy", "nn": "høg"},
}
KIND_WORDS = {
    "device-or-unit": {
        "en": "a device or unit fault (one measurement moved, the patients did not)",
        "nb": "en feil ved utstyr eller enhet (én måling endret seg, pasientene gjorde ikke det)",
        "nn": "ein feil ved utstyr eller eining (éi måling endra seg, pasientane gjorde ikkje det)",
    },
    "population": {
        "en": "a change in the population (who is followed up: age or many measurements)",
        "nb": "en endring i populasjonen (hvem som følges opp: alder eller mange målinger)",
        "nn": "ei endring i populasjonen (kven som blir følgde opp: alder eller mange målingar)",
    },
    "adherence": {
        "en": "a change in adherence (patients measure less often)",
        "nb": "endret etterlevelse (pasientene måler sjeldnere)",
        "nn": "endra etterleving (pasientane måler sjeldnare)",
    },
    "model-output": {
        "en": "a change in the model's predicted risk without a clear change in its inputs",
        "nb": "en endring i modellens beregnede risiko uten tydelig endring i dataene inn",
        "nn": "ei endring i risikoen modellen reknar ut utan tydeleg endring i dataa inn",
    },
    "unclear": {"en": "unclear", "nb": "uklar", "nn": "uklar"},
}
NEXT_STEPS = {
    "device-or-unit": {
        "who": {
            "en": "The unit's medical-technical department and the device/VKP integration owner",
            "nb": "Enhetens medisinsk-tekniske avdeling og eier av utstyrs-/VKP-integrasjonen",
            "nn": "Medisinsk-teknisk avdeling ved eininga og eigaren av utstyrs-/VKP-integrasjonen",
        },
        "what": {
            "en": "Check the devices and their units for {measurement} where it changed; tell "
            "the clinicians that scores using {measurement} may be unreliable until it is "
            "resolved. Do not retrain the model on these data.",
            "nb": "Kontroller utstyret og måleenhetene for {measurement} der endringen er; si "
            "fra til klinikerne at skårer som bruker {measurement} kan være upålitelige til "
            "feilen er rettet. Ikke tren modellen på nytt på disse dataene.",
            "nn": "Kontroller utstyret og måleeiningane for {measurement} der endringa er; sei "
            "frå til klinikarane at skårar som brukar {measurement} kan vere upålitelege til "
            "feilen er retta. Ikkje tren modellen på nytt på desse dataa.",
        },
    },
    "population": {
        "who": {
            "en": "ML engineering, with the clinical lead of the pathway",
            "nb": "ML-teamet, sammen med faglig ansvarlig for forløpet",
            "nn": "ML-teamet, saman med fagleg ansvarleg for forløpet",
        },
        "what": {
            "en": "Re-evaluate the model for the new population before relying on it there; "
            "escalate the report.",
            "nb": "Evaluer modellen på nytt for den nye populasjonen før den brukes der; "
            "eskaler rapporten.",
            "nn": "Evaluer modellen på nytt for den nye populasjonen før han blir brukt der; "
            "eskaler rapporten.",
        },
    },
    "adherence": {
        "who": {
            "en": "The follow-up team (nurses) of the unit",
            "nb": "Oppfølgingsteamet (sykepleierne) ved enheten",
            "nn": "Oppfølgingsteamet (sjukepleiarane) ved eininga",
        },
        "what": {
            "en": "Find out with the patients why measurements are missed (equipment, "
            "instructions, burden); scores lean on fewer readings meanwhile.",
            "nb": "Finn ut sammen med pasientene hvorfor målinger uteblir (utstyr, "
            "instruksjon, belastning); skårene bygger på færre målinger i mellomtiden.",
            "nn": "Finn ut saman med pasientane kvifor målingar manglar (utstyr, "
            "instruksjon, belastning); skårane byggjer på færre målingar i mellomtida.",
        },
    },
    "model-output": {
        "who": {"en": "ML engineering", "nb": "ML-teamet", "nn": "ML-teamet"},
        "what": {
            "en": "Check the model version and its calibration; escalate the report.",
            "nb": "Kontroller modellversjonen og kalibreringen; eskaler rapporten.",
            "nn": "Kontroller modellversjonen og kalibreringa; eskaler rapporten.",
        },
    },
    "unclear": {
        "who": {"en": "ML engineering", "nb": "ML-teamet", "nn": "ML-teamet"},
        "what": {
            "en": "Look at the features in the technical appendix and decide.",
            "nb": "Se på variablene i det tekniske vedlegget og avgjør.",
            "nn": "Sjå på variablane i det tekniske vedlegget og avgjer.",
        },
    },
    "ok": {
        "who": {
            "en": "The compliance officer",
            "nb": "Etterlevelsesansvarlig",
            "nn": "Etterlevingsansvarleg",
        },
        "what": {
            "en": "Read and accept the report.",
            "nb": "Les og godkjenn rapporten.",
            "nn": "Les og godkjenn rapporten.",
        },
    },
}
DATA_QUALITY_STEP = {
    "en": "Data quality is flagged apart from drift: ask the device/VKP integration owner to "
    "check the flagged measurements.",
    "nb": "Datakvalitet er flagget for seg: be eieren av utstyrs-/VKP-integrasjonen kontrollere "
    "de flaggede målingene.",
    "nn": "Datakvalitet er flagga for seg: be eigaren av utstyrs-/VKP-integrasjonen kontrollere "
    "dei flagga målingane.",
}
RECALIBRATION_STEP = {
    "en": "Performance on recorded outcomes has fallen: ML engineering should recalibrate the "
    "model on recent outcomes (or retrain) and document it before the next review.",
    "nb": "Ytelsen på registrerte utfall har falt: ML-teamet bør rekalibrere modellen på nyere "
    "utfall (eller trene den på nytt) og dokumentere det før neste gjennomgang.",
    "nn": "Yteevna på registrerte utfall har falle: ML-teamet bør rekalibrere modellen på nyare "
    "utfall (eller trene han på nytt) og dokumentere det før neste gjennomgang.",
}


def feature_label(name: str, lang: str) -> str:
    """The feature's human label in ``lang`` (never its code name)."""
    if name == "probability":
        return {"en": "Predicted risk", "nb": "Beregnet risiko", "nn": "Utrekna risiko"}[lang]
    f = _FEATURE.get(name)
    if f is None:
        return name
    if lang == "en":
        return f.label_en
    if lang == "nn":
        label = f.label_nb
        for nb, nn in _NN_WORDS:
            label = label.replace(nb, nn)
        return label
    return f.label_nb


def measurement_label(channel: str | None, lang: str) -> str:
    if channel is None:
        return ""
    m = MEASUREMENTS.get(channel)
    if m is None:
        return channel.replace("_", " ")
    return m.label_en if lang == "en" else m.label_nb


def _day(epoch_s: int | None) -> str:
    if epoch_s is None:
        return ""
    return datetime.fromtimestamp(int(epoch_s), UTC).strftime("%Y-%m-%d")


def _scope(payload: dict[str, Any], lang: str) -> str:
    pathway = payload.get("pathway")
    org = payload.get("organisation")
    words = {
        "en": ("pathway", "all pathways", "organisation", "all organisations"),
        "nb": ("forløp", "alle forløp", "organisasjon", "alle organisasjoner"),
        "nn": ("forløp", "alle forløp", "organisasjon", "alle organisasjonar"),
    }[lang]
    p = f"{words[0]} {pathway}" if pathway else words[1]
    o = f"{words[2]} {org}" if org else words[3]
    return f"{p}, {o}"


def _change_line(f: dict[str, Any], lang: str) -> str:
    label = feature_label(f["feature"], lang)
    unit = _FEATURE[f["feature"]].unit if f["feature"] in _FEATURE else ""
    unit = "" if unit in ("band", "points") else unit
    effect = {
        "small": {"en": "small", "nb": "liten", "nn": "lita"},
        "moderate": {"en": "moderate", "nb": "moderat", "nn": "moderat"},
        "large": {"en": "large", "nb": "stor", "nn": "stor"},
        "none": {"en": "none", "nb": "ingen", "nn": "inga"},
    }[f.get("effect") or "none"][lang]
    since = _day(f.get("since"))
    where = ", ".join(
        f"{w['by_label'][lang]} {w['value']}" for w in f.get("where", []) if w.get("moved")
    )
    if f.get("kind") == "numeric" and f.get("mean_current") is not None:
        diff = f["mean_current"] - f["mean_reference"]
        if lang == "en":
            direction = "higher" if diff > 0 else "lower"
            text = (
                f"{label}: on average {abs(diff):.1f} {unit} {direction} than in the reference "
                f"({f['mean_reference']:.1f} → {f['mean_current']:.1f} {unit}); {effect} change"
            )
        elif lang == "nb":
            direction = "høyere" if diff > 0 else "lavere"
            text = (
                f"{label}: i snitt {abs(diff):.1f} {unit} {direction} enn i referansen "
                f"({f['mean_reference']:.1f} → {f['mean_current']:.1f} {unit}); {effect} endring"
            )
        else:
            direction = "høgare" if diff > 0 else "lågare"
            text = (
                f"{label}: i snitt {abs(diff):.1f} {unit} {direction} enn i referansen "
                f"({f['mean_reference']:.1f} → {f['mean_current']:.1f} {unit}); {effect} endring"
            )
    else:
        text = {
            "en": f"{label}: the distribution changed; {effect} change",
            "nb": f"{label}: fordelingen er endret; {effect} endring",
            "nn": f"{label}: fordelinga er endra; {effect} endring",
        }[lang]
    text = " ".join(text.split())
    if since:
        text += {
            "en": f", since about {since}",
            "nb": f", siden omkring {since}",
            "nn": f", sidan omkring {since}",
        }[lang]
    if where:
        text += {
            "en": f", mainly in {where}",
            "nb": f", særlig i {where}",
            "nn": f", særleg i {where}",
        }[lang]
    return text


def summarise(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Plain-language summary per language: headline, changes, kind, quality, next steps, who."""
    out: dict[str, dict[str, Any]] = {}
    verdict = payload["verdict"]
    drifted = [f for f in payload.get("features", []) if f.get("drifted")]
    prediction = payload.get("prediction_drift") or {}
    kind = payload.get("likely_kind")
    window = payload.get("window") or {}
    reference = payload.get("reference") or {}
    perf_alert = bool((payload.get("performance_over_time") or {}).get("recalibration_proposed"))
    for lang in LANGUAGES:
        scope = _scope(payload, lang)
        period = f"{payload['window_start'][:10]} – {payload['window_end'][:10]}"
        if reference.get("kind") == "local-baseline":
            ref_text = {
                "en": f"the site's own baseline {reference.get('window_start', '')[:10]} – "
                f"{reference.get('window_end', '')[:10]}",
                "nb": f"egen baseline {reference.get('window_start', '')[:10]} – "
                f"{reference.get('window_end', '')[:10]}",
                "nn": f"eigen baseline {reference.get('window_start', '')[:10]} – "
                f"{reference.get('window_end', '')[:10]}",
            }[lang]
        else:
            ref_text = {
                "en": "the model's training sample (synthetic data)",
                "nb": "modellens treningsutvalg (syntetiske data)",
                "nn": "treningsutvalet til modellen (syntetiske data)",
            }[lang]
        size = {
            "en": f"{window.get('patients', 0)} patients, {window.get('patient_days', 0)} "
            "patient-days",
            "nb": f"{window.get('patients', 0)} pasienter, {window.get('patient_days', 0)} "
            "pasientdøgn",
            "nn": f"{window.get('patients', 0)} pasientar, {window.get('patient_days', 0)} "
            "pasientdøger",
        }[lang]
        severity = SEVERITY_WORDS[payload.get("severity") or "none"][lang]
        headline = {
            "en": f"{VERDICT_WORDS[verdict]['en']} ({severity} severity) in {scope}, {period} "
            f"({size}), compared with {ref_text}.",
            "nb": f"{VERDICT_WORDS[verdict]['nb']} (alvorlighet {severity}) i {scope}, {period} "
            f"({size}), sammenlignet med {ref_text}.",
            "nn": f"{VERDICT_WORDS[verdict]['nn']} (alvor {severity}) i {scope}, {period} "
            f"({size}), samanlikna med {ref_text}.",
        }[lang]
        changes = [_change_line(f, lang) for f in drifted]
        if prediction.get("drifted"):
            changes.append(
                _change_line({**prediction, "feature": "probability", "kind": "numeric"}, lang)
            )
        if not changes:
            changes = [
                {
                    "en": "Nothing moved beyond what chance gives for a window of this size.",
                    "nb": "Ingenting endret seg mer enn tilfeldigheter gir for et vindu av denne "
                    "størrelsen.",
                    "nn": "Ingenting endra seg meir enn tilfeldigheiter gir for eit vindauge av "
                    "denne storleiken.",
                }[lang]
            ]
        notes = []
        mix = payload.get("pathway_mix") or {}
        if mix.get("changed"):
            notes.append(
                {
                    "en": "Note: the mix of pathways differs from the reference. This alone is not "
                    "drift: features were compared with the reference weighted to this window's mix.",
                    "nb": "Merk: fordelingen mellom forløp er en annen enn i referansen. Det alene er "
                    "ikke drift: variablene ble sammenlignet med referansen vektet til dette "
                    "vinduets fordeling.",
                    "nn": "Merk: fordelinga mellom forløp er ei anna enn i referansen. Det åleine er "
                    "ikkje drift: variablane vart samanlikna med referansen vekta til fordelinga "
                    "i dette vindauget.",
                }[lang]
            )
        untested = [f for f in payload.get("features", []) if f.get("score") is None]
        if untested:
            names = ", ".join(feature_label(f["feature"], lang) for f in untested)
            notes.append(
                {
                    "en": f"Not tested (too few patients measured them): {names}.",
                    "nb": f"Ikke testet (for få pasienter målte dem): {names}.",
                    "nn": f"Ikkje testa (for få pasientar målte dei): {names}.",
                }[lang]
            )
        step_key = kind if verdict != "ok" and kind else "ok"
        steps = NEXT_STEPS[step_key]
        channel = next(
            (
                _FEATURE[f["feature"]].channel
                for f in drifted
                if _FEATURE.get(f["feature"]) and _FEATURE[f["feature"]].channel
            ),
            None,
        )
        what = steps["what"][lang].format(
            measurement=measurement_label(channel, lang) or feature_label("probability", lang)
        )
        next_steps = [what]
        quality = [
            flag[f"text_{'en' if lang == 'en' else 'nb'}"]
            for flag in payload.get("data_quality", [])
        ]
        if quality:
            next_steps.append(DATA_QUALITY_STEP[lang])
        if perf_alert:
            next_steps.append(RECALIBRATION_STEP[lang])
        out[lang] = {
            "headline": headline,
            "changes": changes,
            "likely_kind": None if not kind or verdict == "ok" else KIND_WORDS[kind][lang],
            "data_quality": quality,
            "notes": notes,
            "next_steps": next_steps,
            "who": steps["who"][lang],
        }
    return out
