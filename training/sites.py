"""Site profiles and leave-one-profile-out evaluation: does the model hold at another hospital?

A site differs from the simulator's default in ways a hospital change brings (issue 11):

- age mix and event rate (the simulator's pathway profiles, shifted);
- adherence, with missed days in streaks (whole days without any reading);
- device biases (another brand: SpO2 −1 %, weight +0.3 kg, systolic +3 mmHg);
- how much patients' measuring behaviour changes when unwell: the simulator lets a prodrome
  bring extra evening readings and questionnaires at every session; a site where it does not
  keeps one session a day. Evaluating on that site measures how much of the model's signal is
  illness-driven measuring behaviour, and whether it transfers.

Leave-one-profile-out: train on the other profiles, choose the operating points on their
validation rows, score the held-out profile. Beside the model: NEWS2 ≥ 5, the heart-failure
weight rule, and a naive personal z-score (:func:`personal_zscore`). Synthetic data throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from models.features import DAY_S, LATEST_LOOKBACK_S
from training.simulator import Cohort, PathwayProfile, Readings

ZSCORE_CHANNELS = {  # channel -> (risk sign of a rise, SD floor in its unit)
    "spo2": (-1.0, 1.0),
    "heart_rate": (1.0, 3.0),
    "respiratory_rate": (1.0, 1.5),
    "temperature": (1.0, 0.2),
    "systolic_bp": (-1.0, 5.0),
    "weight": (1.0, 0.4),
}


@dataclass(frozen=True)
class SiteProfile:
    name: str
    description: str
    age_shift_years: float = 0.0
    event_rate_factor: float = 1.0
    missed_streak_start: float = 0.0  # daily chance that a run of missed days begins
    missed_streak_mean_days: float = 3.0
    device_bias: tuple[tuple[str, float], ...] = ()
    behaviour_follows_illness: bool = True

    def pathway_profile(self, profile: PathwayProfile) -> PathwayProfile:
        return replace(
            profile,
            age_mean=min(profile.age_mean + self.age_shift_years, profile.age_max - 1),
            event_rate_per_day=profile.event_rate_per_day * self.event_rate_factor,
        )


SITE_PROFILES: tuple[SiteProfile, ...] = (
    SiteProfile("home", "the simulator's default"),
    SiteProfile(
        "older-poor-adherence",
        "8 years older, missed days in streaks (a run starts on 6 % of days, mean 3 days)",
        age_shift_years=8.0,
        missed_streak_start=0.06,
    ),
    SiteProfile(
        "other-device",
        "another device brand (SpO2 −1 %, weight +0.3 kg, systolic +3 mmHg), 30 % more events",
        event_rate_factor=1.3,
        device_bias=(("spo2", -1.0), ("weight", 0.3), ("systolic_bp", 3.0)),
    ),
    SiteProfile(
        "steady-habits",
        "measuring does not change when unwell (one session a day), 20 % fewer events",
        event_rate_factor=0.8,
        behaviour_follows_illness=False,
    ),
)


def _site_readings(cohort: Cohort, site: SiteProfile, seed: int) -> Readings:
    r = cohort.readings
    keep = np.ones(len(r), dtype=bool)
    value = r.value.copy()
    day = (r.time_s - cohort.start_s) // DAY_S
    rng = np.random.default_rng(seed)
    if site.missed_streak_start > 0:
        missed: set[tuple[int, int]] = set()
        for p in cohort.patients:
            d = 0
            while d < p.follow_up_days:
                if rng.random() < site.missed_streak_start:
                    length = 1 + int(rng.geometric(1.0 / site.missed_streak_mean_days)) - 1
                    missed.update((p.key, d + k) for k in range(max(length, 1)))
                    d += max(length, 1)
                d += 1
        keep &= ~np.fromiter(
            ((int(p), int(dd)) in missed for p, dd in zip(r.patient, day, strict=True)),
            dtype=bool,
            count=len(r),
        )
    if not site.behaviour_follows_illness:
        # One session a day: only the day's first reading of each channel is sent.
        order = np.lexsort((r.time_s, r.channel, day, r.patient))
        first = np.ones(len(r), dtype=bool)
        same = (
            (r.patient[order][1:] == r.patient[order][:-1])
            & (day[order][1:] == day[order][:-1])
            & (r.channel[order][1:] == r.channel[order][:-1])
            & (r.message_id[order][1:] != r.message_id[order][:-1])
        )
        first[order[1:][same]] = False
        keep &= first
    for channel, bias in site.device_bias:
        value = np.where(r.channel == channel, value + bias, value)
    return Readings(
        r.patient[keep], r.channel[keep], r.time_s[keep], value[keep], r.message_id[keep]
    )


def simulate_site(
    site: SiteProfile, n_patients: int, days: int, seed: int
) -> tuple[Cohort, Any, Any, Any]:
    """A cohort of this site, and its rows (X, y, meta) as the service would score them."""
    from training import simulator
    from training.simulator import simulate_cohort, snapshot_dataset

    original = dict(simulator.PROFILES)
    try:
        for k, profile in original.items():
            simulator.PROFILES[k] = site.pathway_profile(profile)
        cohort = simulate_cohort(n_patients, days, seed)
    finally:
        simulator.PROFILES.clear()
        simulator.PROFILES.update(original)
    cohort = replace(cohort, readings=_site_readings(cohort, site, seed + 1))
    X, y, meta = snapshot_dataset(cohort)
    return cohort, X, y, meta


def personal_zscore(cohort: Cohort, patient: np.ndarray, time_s: np.ndarray) -> np.ndarray:
    """A naive personal baseline: for each vital, (latest − personal mean) / personal SD over the
    14 days before the last 24 h, signed so that a worrying change is positive; the row's score
    is the largest over the vitals (−inf when nothing can be computed)."""
    r = cohort.readings
    span = np.int64(1) << np.int64(40)
    best = np.full(len(patient), -np.inf)
    for channel, (sign, floor) in ZSCORE_CHANNELS.items():
        sel = r.channel == channel
        p, t, v = r.patient[sel].astype(np.int64), r.time_s[sel], r.value[sel]
        order = np.lexsort((t, p))
        p, t, v = p[order], t[order], v[order]
        key = p * span + t
        c1, c2 = np.r_[0.0, np.cumsum(v)], np.r_[0.0, np.cumsum(v * v)]
        q = patient.astype(np.int64) * span
        lo = np.searchsorted(key, q + time_s - 14 * DAY_S, side="left")
        hi = np.searchsorted(key, q + time_s - DAY_S, side="left")
        n = hi - lo
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (c1[hi] - c1[lo]) / n
            sd = np.sqrt(np.maximum((c2[hi] - c2[lo]) / n - mean**2, 0.0))
        last = np.searchsorted(key, q + time_s, side="right") - 1
        safe = np.maximum(last, 0)
        ok = (last >= 0) & (n >= 3)
        if len(p):
            ok &= (p[safe] == patient) & (t[safe] >= time_s - LATEST_LOOKBACK_S)
            z = sign * (v[safe] - mean) / np.maximum(sd, floor)
            best = np.where(ok, np.maximum(best, np.nan_to_num(z, nan=-np.inf)), best)
    return best


def _threshold_for_budget(
    score: np.ndarray, y: np.ndarray, meta: Any, budget: float, seed: int
) -> float:
    """One threshold (not per pathway) meeting the alert budget: for a score, not a model."""
    from models.operating_points import SPEC_BY_NAME
    from training.operating_points import PathwayRows, choose_threshold

    finite = np.where(np.isfinite(score), score, np.nanmin(score[np.isfinite(score)]) - 1)
    rows = PathwayRows.build(finite, y, meta)
    spec = replace(SPEC_BY_NAME["budget-2"], target=budget)
    return choose_threshold(rows, spec)


def _alert_figures(alert: np.ndarray, y: np.ndarray, meta: Any) -> dict[str, Any]:
    from training.operating_points import PathwayRows

    out: dict[str, Any] = {}
    pathways = np.asarray(meta["pathway"]).astype(str)
    totals = {k: 0.0 for k in ("rows", "new_alerts", "true_alerts", "events", "found")}
    for pw in sorted(set(pathways.tolist())):
        sel = pathways == pw
        rows = PathwayRows.build(alert[sel].astype(float), y[sel], meta[sel])
        c = {k: float(v.sum()) for k, v in rows.per_patient(0.5).items()}
        out[pw] = _summary(c)
        for k in totals:
            totals[k] += c[k]
    out["overall"] = _summary(totals)
    return out


def _summary(c: dict[str, float]) -> dict[str, float]:
    return {
        "event_sensitivity": c["found"] / c["events"] if c["events"] else float("nan"),
        "alerts_per_100_patient_days": 100 * c["new_alerts"] / c["rows"] if c["rows"] else 0.0,
        "ppv": c["true_alerts"] / c["new_alerts"] if c["new_alerts"] else float("nan"),
        "events": c["events"],
    }


def leave_one_profile_out(
    n_patients: int = 1000,
    days: int = 45,
    seed: int = 11,
    sites: tuple[SiteProfile, ...] = SITE_PROFILES,
    stump: Any = None,
    n_boot: int = 50,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train on all profiles but one, test on that one; model and baselines side by side."""
    from training.baselines import baseline_scores
    from training.datachecks import split_by_patient
    from training.evaluation import bootstrap_ci, ece, weighted_auroc
    from training.model_fit import StumpConfig, fit_additive
    from training.operating_points import choose_operating_points, figures_on

    say = progress or (lambda _msg: None)
    data = {}
    for i, site in enumerate(sites):
        say(f"simulate {site.name}")
        data[site.name] = simulate_site(site, n_patients, days, seed + 100 * i)
    results: dict[str, Any] = {}
    for held in sites:
        say(f"leave out {held.name}")
        train_sites = [s for s in sites if s.name != held.name]
        Xs, ys, metas = [], [], []
        for k, s in enumerate(train_sites):
            _, X, y, meta = data[s.name]
            meta = meta.copy()
            meta["patient"] = meta["patient"] + (k + 1) * 1_000_000  # distinct across sites
            Xs.append(X)
            ys.append(y)
            metas.append(meta)
        import pandas as pd

        X_tr, y_tr = np.vstack(Xs), np.concatenate(ys)
        meta_tr = pd.concat(metas, ignore_index=True)
        splits = split_by_patient(meta_tr, seed)
        fit_rows = splits["train"] | splits["test"]
        va = splits["validation"]
        fitted = fit_additive(
            X_tr[fit_rows],
            y_tr[fit_rows],
            X_tr[va],
            y_tr[va],
            seed,
            stump or StumpConfig(max_iter=200, min_samples_leaf=40),
        )
        points = choose_operating_points(
            fitted.model.predict_proba(X_tr[va]), y_tr[va], meta_tr[va], seed, n_boot
        )
        cohort, X, y, meta = data[held.name]
        p = fitted.model.predict_proba(X)
        model_red = figures_on(points, p, y, meta)["budget-2"]
        rules = baseline_scores(cohort, X, meta)
        news = rules.scores["NEWS2 ≥ 5"]
        weight = rules.scores["Weight gain > 2 kg in 3 days"]
        hf = np.asarray(meta["pathway"]) == "heart-failure"
        z = personal_zscore(cohort, np.asarray(meta["patient"]), np.asarray(meta["time_s"]))
        # The z-score's alert threshold: budget 2 on the training profiles, as for the model.
        z_train = np.concatenate(
            [
                personal_zscore(
                    data[s.name][0],
                    np.asarray(data[s.name][3]["patient"]),
                    np.asarray(data[s.name][3]["time_s"]),
                )
                for s in train_sites
            ]
        )
        z_thr = _threshold_for_budget(z_train, y_tr, meta_tr, 2.0, seed)
        ci = bootstrap_ci(p, y, np.asarray(meta["patient"]), seed, n_boot)
        results[held.name] = {
            "description": held.description,
            "rows": len(y),
            "events": int(model_red["overall"].get("events", 0))
            if "events" in model_red["overall"]
            else None,
            "model": {
                "auroc": weighted_auroc(p, y),
                "auroc_ci": ci["auroc_ci"],
                "ece": ece(p, y),
                "red_budget_2": model_red,
            },
            "news2_ge_5": {
                "auroc": weighted_auroc(np.nan_to_num(news, nan=-1), y),
                "alerts": _alert_figures(news >= 5, y, meta),
            },
            "weight_rule_hf": {
                "auroc": weighted_auroc(np.where(np.isfinite(weight), weight, -99)[hf], y[hf]),
                "alerts": _alert_figures(np.nan_to_num(weight, nan=-99) > 2.0, y, meta)[
                    "heart-failure"
                ]
                if hf.any()
                else {},
            },
            "personal_zscore": {
                "auroc": weighted_auroc(np.where(np.isfinite(z), z, -99), y),
                "threshold": z_thr,
                "alerts": _alert_figures(z >= z_thr, y, meta),
            },
        }
    return {
        "synthetic": True,
        "n_patients_per_profile": n_patients,
        "days": days,
        "seed": seed,
        "profiles": {s.name: s.description for s in sites},
        "results": results,
    }


def lopo_table(lopo: dict[str, Any]) -> str:
    """Markdown: per held-out profile, the model beside NEWS2, the weight rule and the z-score."""

    def f(x: Any, pct: bool = False) -> str:
        if x is None or (isinstance(x, float) and not np.isfinite(x)):
            return "–"
        return f"{100 * x:.0f} %" if pct else f"{x:.2f}"

    lines = [
        "| held-out profile | model AUROC [95 % CI] | model red (budget-2): event sensitivity "
        "/ new alerts per 100 pd / PPV | NEWS2 ≥ 5: AUROC / sensitivity / alerts / PPV | "
        "weight rule (HF): AUROC / sensitivity / alerts | personal z-score: AUROC / "
        "sensitivity / alerts / PPV |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in lopo["results"].items():
        m = r["model"]
        red = m["red_budget_2"]["overall"]
        n = r["news2_ge_5"]
        w = r["weight_rule_hf"]
        z = r["personal_zscore"]
        lo, hi = m["auroc_ci"]
        lines.append(
            f"| {name} | {f(m['auroc'])} [{f(lo)}–{f(hi)}] | {f(red['event_sensitivity'], True)}"
            f" / {f(red['alerts_per_100_patient_days'])} / {f(red['ppv'], True)} | "
            f"{f(n['auroc'])} / {f(n['alerts']['overall']['event_sensitivity'], True)} / "
            f"{f(n['alerts']['overall']['alerts_per_100_patient_days'])} / "
            f"{f(n['alerts']['overall']['ppv'], True)} | {f(w['auroc'])} / "
            f"{f(w['alerts'].get('event_sensitivity'), True)} / "
            f"{f(w['alerts'].get('alerts_per_100_patient_days'))} | {f(z['auroc'])} / "
            f"{f(z['alerts']['overall']['event_sensitivity'], True)} / "
            f"{f(z['alerts']['overall']['alerts_per_100_patient_days'])} / "
            f"{f(z['alerts']['overall']['ppv'], True)} |"
        )
    lines.append("")
    lines.append(
        "| held-out profile | red event sensitivity per pathway (model, budget-2) |\n|---|---|"
    )
    for name, r in lopo["results"].items():
        per = r["model"]["red_budget_2"]["pathways"]
        lines.append(
            f"| {name} | "
            + ", ".join(f"{pw} {f(v['event_sensitivity'], True)}" for pw, v in sorted(per.items()))
            + " |"
        )
    return "\n".join(lines)
