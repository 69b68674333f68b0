"""Named operating points: per pathway, the probability threshold that meets an alert budget or
an event sensitivity on validation data, with its validation figures and patient-bootstrap CIs.

The figures are those a clinician plans with:

- **new alerts per 100 patient-days**: a row (one patient-day) alerts and the patient's previous
  row did not; an alert that stays raised is one worklist item, not one a day;
- **event sensitivity**: an event counts as found if any row in the 72 h before its onset alerts;
- **alert PPV**: the share of new alerts followed by an onset within 72 h.

Pathways refer to these points by name (``"red": "budget-2"``); the service resolves the name
against the manifest of the model it has loaded (models.operating_points).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.operating_points import OPERATING_POINT_SPECS, OperatingPointSpec

N_CANDIDATES = 300
CURVE_POINTS = 25


@dataclass
class PathwayRows:
    """One pathway's validation rows, sorted by (patient, time)."""

    prob: np.ndarray
    y: np.ndarray
    patient: np.ndarray  # per row, 0..n_patients-1
    first_of_patient: np.ndarray  # bool per row
    event_key: np.ndarray  # per positive row: event id (patient, onset); -1 for negatives
    n_patients: int
    n_events: int
    event_patient: np.ndarray  # per event: patient index

    @classmethod
    def build(cls, prob: np.ndarray, y: np.ndarray, meta: Any) -> PathwayRows:
        patient_raw = np.asarray(meta["patient"])
        time_s = np.asarray(meta["time_s"], dtype=np.int64)
        order = np.lexsort((time_s, patient_raw))
        keys, patient = np.unique(patient_raw[order], return_inverse=True)
        y_sorted = np.asarray(y)[order].astype(bool)
        first = np.r_[True, patient[1:] != patient[:-1]] if len(patient) else np.zeros(0, bool)
        tte = np.asarray(meta["time_to_event_h"], dtype=np.float64)[order]
        onset = np.where(y_sorted, time_s[order] + np.round(np.nan_to_num(tte) * 3600), -1)
        pair = np.where(y_sorted, patient.astype(np.int64) * (1 << 40) + onset.astype(np.int64), -1)
        uniq, event_key = np.unique(pair, return_inverse=True)
        real = uniq >= 0
        # Map event ids so that -1 (negatives) becomes -1 and events are 0..n_events-1.
        remap = np.cumsum(real) - 1
        event_key = np.where(y_sorted, remap[event_key], -1)
        event_patient = (uniq[real] // (1 << 40)).astype(np.int64)
        return cls(
            prob=np.asarray(prob, dtype=np.float64)[order],
            y=y_sorted,
            patient=patient,
            first_of_patient=first,
            event_key=event_key,
            n_patients=len(keys),
            n_events=int(real.sum()),
            event_patient=event_patient,
        )

    def per_patient(self, threshold: float) -> dict[str, np.ndarray]:
        """Per-patient counts at a threshold: rows, new alerts, true new alerts, events, found."""
        alert = self.prob >= threshold
        new = alert & (self.first_of_patient | ~np.r_[False, alert[:-1]])
        n = self.n_patients
        detected = np.zeros(self.n_events, dtype=bool)
        hit = alert & (self.event_key >= 0)
        detected[self.event_key[hit]] = True
        return {
            "rows": np.bincount(self.patient, minlength=n).astype(float),
            "new_alerts": np.bincount(self.patient, weights=new, minlength=n),
            "true_alerts": np.bincount(self.patient, weights=new & self.y, minlength=n),
            "events": np.bincount(self.event_patient, minlength=n).astype(float),
            "found": np.bincount(self.event_patient, weights=detected, minlength=n),
        }


def _figures(c: dict[str, np.ndarray], w: np.ndarray | None = None) -> dict[str, float]:
    def total(k: str) -> float:
        return float(c[k].sum() if w is None else (c[k] * w).sum())

    rows, alerts, events = total("rows"), total("new_alerts"), total("events")
    return {
        "alerts_per_100_patient_days": 100.0 * alerts / rows if rows else float("nan"),
        "event_sensitivity": total("found") / events if events else float("nan"),
        "ppv": total("true_alerts") / alerts if alerts else float("nan"),
    }


def figures_at(rows: PathwayRows, threshold: float) -> dict[str, float]:
    """Validation figures of one threshold (no intervals)."""
    return _figures(rows.per_patient(threshold))


def _with_ci(rows: PathwayRows, threshold: float, seed: int, n_boot: int) -> dict[str, Any]:
    counts = rows.per_patient(threshold)
    out: dict[str, Any] = dict(_figures(counts))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in out}
    for _ in range(n_boot):
        w = rng.multinomial(rows.n_patients, np.full(rows.n_patients, 1.0 / rows.n_patients))
        for k, v in _figures(counts, w.astype(float)).items():
            if np.isfinite(v):
                draws[k].append(v)
    for k, values in draws.items():
        out[f"{k}_ci"] = (
            [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
            if values
            else [float("nan"), float("nan")]
        )
    out["events"] = int(counts["events"].sum())
    out["patient_days"] = int(counts["rows"].sum())
    out["patients"] = rows.n_patients
    return out


def _candidates(prob: np.ndarray) -> np.ndarray:
    qs = np.unique(np.quantile(prob, np.linspace(0.0, 1.0, N_CANDIDATES)))
    return np.r_[qs, np.nextafter(qs.max(), np.inf)] if len(qs) else np.array([1.0])


def choose_threshold(rows: PathwayRows, spec: OperatingPointSpec) -> float:
    """The threshold that meets the spec on these rows.

    A budget: the lowest threshold whose new alerts per 100 patient-days stay within it (the
    most sensitivity the budget buys). A sensitivity: the highest threshold that still finds
    that share of events (the fewest alerts for it).
    """
    cands = _candidates(rows.prob)[::-1]  # from the highest threshold down
    chosen = float(cands[0])
    for t in cands:
        f = figures_at(rows, float(t))
        if spec.kind == "alert_budget":
            # Stop at the first threshold over budget: lower down, alerts merge into long
            # stretches that count once, and "everyone red all the time" would look cheap.
            if f["alerts_per_100_patient_days"] > spec.target:
                break
            chosen = float(t)
        elif np.isfinite(f["event_sensitivity"]) and f["event_sensitivity"] >= spec.target:
            return float(t)
        else:
            chosen = float(t)
    return chosen


def curve(rows: PathwayRows) -> list[dict[str, float | None]]:
    """Alerts per 100 patient-days against event sensitivity over thresholds (for the card)."""
    cands = _candidates(rows.prob)
    idx = np.unique(np.linspace(0, len(cands) - 1, CURVE_POINTS).round().astype(int))
    out = []
    for t in cands[idx]:
        f = figures_at(rows, float(t))
        out.append(
            {
                "threshold": float(t),
                "alerts_per_100_patient_days": round(f["alerts_per_100_patient_days"], 3),
                "event_sensitivity": round(f["event_sensitivity"], 3)
                if np.isfinite(f["event_sensitivity"])
                else None,
            }
        )
    return out


def choose_operating_points(
    prob: np.ndarray,
    y: np.ndarray,
    meta: Any,
    seed: int,
    n_boot: int = 200,
    specs: tuple[OperatingPointSpec, ...] = OPERATING_POINT_SPECS,
) -> dict[str, Any]:
    """Per pathway: every named point's threshold with validation figures and 95 % CIs.

    Returns ``{"pathways": {pathway: {"points": {name: {...}}, "curve": [...]}}, "note": ...}``,
    the shape stored under ``operating_points`` in the manifest.
    """
    pathways = np.asarray(meta["pathway"]).astype(str)
    out: dict[str, Any] = {}
    for pathway in sorted(set(pathways.tolist())):
        sel = pathways == pathway
        rows = PathwayRows.build(np.asarray(prob)[sel], np.asarray(y)[sel], meta[sel])
        points: dict[str, Any] = {}
        for spec in specs:
            threshold = choose_threshold(rows, spec)
            points[spec.name] = {
                "kind": spec.kind,
                "target": spec.target,
                "description": spec.description,
                "threshold": threshold,
                "validation": _with_ci(rows, threshold, seed, n_boot),
            }
        out[pathway] = {"points": points, "curve": curve(rows)}
    return {
        "pathways": out,
        "note": "chosen on the validation split of synthetic data (training/simulator.py); "
        "alerts are new alerts (an alert that stays raised counts once); 95 % CIs resample "
        "patients",
    }


def figures_on(
    operating_points: dict[str, Any], prob: np.ndarray, y: np.ndarray, meta: Any
) -> dict[str, Any]:
    """Each named point's per-pathway validation threshold applied to other rows (a hold-out or
    an unseen site): figures per pathway and pooled over pathways."""
    pathways = np.asarray(meta["pathway"]).astype(str)
    per_point: dict[str, Any] = {}
    pooled: dict[str, dict[str, np.ndarray]] = {}
    for pathway, entry in operating_points["pathways"].items():
        sel = pathways == pathway
        if not sel.any():
            continue
        rows = PathwayRows.build(np.asarray(prob)[sel], np.asarray(y)[sel], meta[sel])
        for name, point in entry["points"].items():
            counts = rows.per_patient(float(point["threshold"]))
            per_point.setdefault(name, {"pathways": {}})["pathways"][pathway] = _figures(counts)
            sums = {k: np.array([v.sum()]) for k, v in counts.items()}
            if name in pooled:
                pooled[name] = {k: pooled[name][k] + sums[k] for k in sums}
            else:
                pooled[name] = sums
    for name, sums in pooled.items():
        per_point[name]["overall"] = _figures(sums)
    return per_point


def plot_operating_curves(operating_points: dict[str, Any], path: Any) -> Any:
    """Alerts per 100 patient-days against event sensitivity, one line per pathway."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=90)
    for pathway, entry in sorted(operating_points["pathways"].items()):
        pts = [c for c in entry["curve"] if c["event_sensitivity"] is not None]
        line = ax.plot(
            [c["alerts_per_100_patient_days"] for c in pts],
            [c["event_sensitivity"] for c in pts],
            "-",
            label=pathway,
        )
        red = entry["points"].get("budget-2")
        if red:
            v = red["validation"]
            ax.plot(
                [v["alerts_per_100_patient_days"]],
                [v["event_sensitivity"]],
                "o",
                color=line[0].get_color(),
            )
    ax.set_xlabel("new alerts per 100 patient-days")
    ax.set_ylabel("event sensitivity (72 h before onset)")
    ax.set_xlim(0, 20)
    ax.set_ylim(0, 1)
    ax.set_title("Operating points (validation, synthetic data); dot: budget-2")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


def operating_points_table(operating_points: dict[str, Any], test: dict[str, Any]) -> str:
    """Markdown: per pathway and named point, validation figures (CIs) and hold-out figures."""

    def f(x: Any, d: int = 2) -> str:
        return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{d}f}"

    def ci(v: Any, d: int = 2) -> str:
        return f"[{f(v[0], d)}–{f(v[1], d)}]" if isinstance(v, list) else ""

    lines = [
        "| pathway | point | threshold | alerts /100 pd (validation) | event sensitivity "
        "(validation) | PPV (validation) | alerts /100 pd (test) | event sensitivity (test) "
        "| PPV (test) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pathway, entry in sorted(operating_points["pathways"].items()):
        for name, p in entry["points"].items():
            v = p["validation"]
            t = test.get(name, {}).get("pathways", {}).get(pathway, {})
            lines.append(
                f"| {pathway} | `{name}` | {f(p['threshold'], 4)} | "
                f"{f(v['alerts_per_100_patient_days'], 1)} "
                f"{ci(v.get('alerts_per_100_patient_days_ci'), 1)} | "
                f"{f(v['event_sensitivity'])} {ci(v.get('event_sensitivity_ci'))} | "
                f"{f(v['ppv'])} {ci(v.get('ppv_ci'))} | "
                f"{f(t.get('alerts_per_100_patient_days'), 1)} | "
                f"{f(t.get('event_sensitivity'))} | {f(t.get('ppv'))} |"
            )
    return "\n".join(lines)
