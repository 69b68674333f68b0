"""Evaluation on a patient-level hold-out: discrimination with patient-cluster bootstrap CIs,
calibration, operating-point figures, warning time, per slice (pathway, age band, sex).

All figures come from synthetic data (training/simulator.py); they show that the pipeline
works and how the model compares with rules on that data, not how it performs on patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SLICE_COLUMNS = ("pathway", "age_band", "sex")
N_BOOTSTRAP = 200
ECE_BINS = 10
MIN_SLICE_POSITIVES = 10  # fewer positive rows: the slice AUROC is reported but not gated


def weighted_auroc(score: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mann–Whitney AUROC with row weights (ties count half); NaN if one class is absent."""
    score = np.asarray(score, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    w = np.ones(len(score)) if w is None else np.asarray(w, dtype=np.float64)
    order = np.argsort(score, kind="mergesort")
    s, yy, ww = score[order], y[order], w[order]
    pos_w, neg_w = np.where(yy, ww, 0.0), np.where(yy, 0.0, ww)
    total_pos, total_neg = pos_w.sum(), neg_w.sum()
    if total_pos == 0 or total_neg == 0:
        return float("nan")
    # Group ties: negatives strictly below + half the tied negatives, per tie group.
    boundaries = np.r_[True, s[1:] != s[:-1]]
    group = np.cumsum(boundaries) - 1
    neg_in_group = np.bincount(group, weights=neg_w)
    pos_in_group = np.bincount(group, weights=pos_w)
    neg_below = np.cumsum(neg_in_group) - neg_in_group
    return float(((neg_below + 0.5 * neg_in_group) * pos_in_group).sum() / (total_pos * total_neg))


def weighted_average_precision(
    score: np.ndarray, y: np.ndarray, w: np.ndarray | None = None
) -> float:
    """Average precision (area under the step PR curve), tie groups handled as sklearn does."""
    score = np.asarray(score, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    w = np.ones(len(score)) if w is None else np.asarray(w, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    s, yy, ww = score[order], y[order], w[order]
    total_pos = (ww * yy).sum()
    if total_pos == 0:
        return float("nan")
    last_of_group = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(ww * yy)[last_of_group]
    fp = np.cumsum(ww * ~yy)[last_of_group]
    precision = tp / np.maximum(tp + fp, 1e-12)
    recall = tp / total_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def brier(prob: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((np.asarray(prob) - np.asarray(y)) ** 2))


def ece(prob: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error over equal-width probability bins, weighted by count."""
    prob, y = np.asarray(prob, dtype=np.float64), np.asarray(y, dtype=np.float64)
    bins = np.minimum((prob * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += sel.mean() * abs(prob[sel].mean() - y[sel].mean())
    return float(total)


def reliability_curve(
    prob: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed rate, count) per equal-width bin."""
    prob, y = np.asarray(prob, dtype=np.float64), np.asarray(y, dtype=np.float64)
    bins = np.minimum((prob * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore"):
        mean_p = np.bincount(bins, weights=prob, minlength=n_bins) / count
        rate = np.bincount(bins, weights=y, minlength=n_bins) / count
    return mean_p, rate, count


def quantile_reliability_curve(
    prob: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed rate, count) per equal-count (quantile) bin: with rare events
    most rows sit near 0, and equal-width bins would leave the upper bins nearly empty."""
    prob, y = np.asarray(prob, dtype=np.float64), np.asarray(y, dtype=np.float64)
    edges = np.unique(np.quantile(prob, np.linspace(0, 1, n_bins + 1)[1:-1]))
    bins = np.searchsorted(edges, prob, side="right")
    k = len(edges) + 1
    count = np.bincount(bins, minlength=k).astype(float)
    with np.errstate(invalid="ignore"):
        mean_p = np.bincount(bins, weights=prob, minlength=k) / count
        rate = np.bincount(bins, weights=y, minlength=k) / count
    return mean_p, rate, count


def bootstrap_ci(
    score: np.ndarray, y: np.ndarray, patient: np.ndarray, seed: int, n_boot: int = N_BOOTSTRAP
) -> dict[str, list[float]]:
    """95 % CIs of AUROC and AUPRC, resampling patients (rows of a patient move together).

    Sorted once; each resample only changes the row weights, so it costs O(rows).
    """
    score = np.asarray(score, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    keys, inverse = np.unique(patient, return_inverse=True)
    rng = np.random.default_rng(seed)
    asc = np.argsort(score, kind="mergesort")
    s_asc, y_asc = score[asc], y[asc]
    group_asc = np.cumsum(np.r_[True, s_asc[1:] != s_asc[:-1]]) - 1
    desc = asc[::-1]
    s_desc, y_desc = score[desc], y[desc]
    last_desc = np.r_[s_desc[1:] != s_desc[:-1], True]
    aurocs, auprcs = [], []
    for _ in range(n_boot):
        counts = rng.multinomial(len(keys), np.full(len(keys), 1.0 / len(keys)))
        w = counts[inverse].astype(np.float64)
        wa = w[asc]
        pos_w, neg_w = np.where(y_asc, wa, 0.0), np.where(y_asc, 0.0, wa)
        tp_, tn_ = pos_w.sum(), neg_w.sum()
        if tp_ == 0 or tn_ == 0:
            continue
        neg_g = np.bincount(group_asc, weights=neg_w)
        pos_g = np.bincount(group_asc, weights=pos_w)
        below = np.cumsum(neg_g) - neg_g
        aurocs.append(float(((below + 0.5 * neg_g) * pos_g).sum() / (tp_ * tn_)))
        wd = w[desc]
        tp = np.cumsum(wd * y_desc)[last_desc]
        fp = np.cumsum(wd * ~y_desc)[last_desc]
        precision = tp / np.maximum(tp + fp, 1e-12)
        auprcs.append(float(np.sum(np.diff(np.r_[0.0, tp / tp_]) * precision)))

    def ci(values: list[float]) -> list[float]:
        if not values:
            return [float("nan"), float("nan")]
        arr = np.asarray(values)
        return [float(np.percentile(arr, 2.5)), float(np.percentile(arr, 97.5))]

    return {"auroc_ci": ci(aurocs), "auprc_ci": ci(auprcs)}


def event_table(y: np.ndarray, meta: Any) -> tuple[np.ndarray, np.ndarray]:
    """Positive rows and the onset time (s) of the event each one precedes."""
    pos = np.flatnonzero(np.asarray(y) == 1)
    onset = (
        np.asarray(meta["time_s"])[pos] + np.round(np.asarray(meta["time_to_event_h"])[pos] * 3600)
    ).astype(np.int64)
    return pos, onset


def operating_point(alert: np.ndarray, y: np.ndarray, meta: Any) -> dict[str, float]:
    """Row sensitivity, PPV, alerts per 100 patient-days, event sensitivity, warning time.

    One row is one patient-day, so alerts per 100 patient-days is 100 × alert rows / rows.
    An event counts as detected if any row in its 72 h window alerts; the warning time is
    from the first such alert to the onset.
    """
    alert = np.asarray(alert, dtype=bool)
    y = np.asarray(y).astype(bool)
    tp = int((alert & y).sum())
    n_alert = int(alert.sum())
    out: dict[str, float] = {
        "sensitivity": tp / max(int(y.sum()), 1),
        "ppv": tp / n_alert if n_alert else float("nan"),
        "alerts_per_100_patient_days": 100.0 * n_alert / max(len(y), 1),
    }
    pos, onset = event_table(y.astype(int), meta)
    patient = np.asarray(meta["patient"])[pos]
    times = np.asarray(meta["time_s"])[pos]
    warnings: list[float] = []
    n_events = 0
    span = np.int64(1) << np.int64(40)
    keys = patient * span + onset
    for k in np.unique(keys):
        rows = keys == k
        n_events += 1
        fired = alert[pos][rows]
        if fired.any():
            first = times[rows][fired].min()
            warnings.append((int(onset[rows][0]) - int(first)) / 3600.0)
    out["events"] = float(n_events)
    out["event_sensitivity"] = len(warnings) / n_events if n_events else float("nan")
    out["median_warning_h"] = float(np.median(warnings)) if warnings else float("nan")
    return out


def threshold_for_sensitivity(prob: np.ndarray, y: np.ndarray, sensitivity: float) -> float:
    """The highest threshold whose row sensitivity (prob >= threshold) reaches the target."""
    pos = np.sort(np.asarray(prob)[np.asarray(y) == 1])[::-1]
    if len(pos) == 0:
        return 1.0
    k = int(np.ceil(sensitivity * len(pos))) - 1
    return float(pos[min(max(k, 0), len(pos) - 1)])


@dataclass
class ScoreSpec:
    """One scored system to evaluate: a model (probabilities) or a rule (score + alert)."""

    name: str
    score: np.ndarray
    alert: np.ndarray
    probability: bool  # calibration figures only make sense for probabilities
    applies: np.ndarray | None = None


def evaluate_scores(
    spec: ScoreSpec, y: np.ndarray, meta: Any, seed: int, with_ci: bool = True
) -> dict[str, Any]:
    """Overall and per-slice figures for one scored system."""
    rows = np.ones(len(y), dtype=bool) if spec.applies is None else spec.applies

    def figures(sel: np.ndarray, ci: bool) -> dict[str, Any]:
        s, yy = spec.score[sel], np.asarray(y)[sel]
        out: dict[str, Any] = {
            "rows": int(sel.sum()),
            "positives": int(yy.sum()),
            "auroc": weighted_auroc(s, yy),
            "auprc": weighted_average_precision(s, yy),
        }
        if ci:
            out.update(bootstrap_ci(s, yy, np.asarray(meta["patient"])[sel], seed))
        if spec.probability:
            out["brier"] = brier(s, yy)
            out["ece"] = ece(s, yy)
        out.update(operating_point(spec.alert[sel], yy, meta[sel]))
        return out

    result: dict[str, Any] = {"overall": figures(rows, with_ci), "slices": {}}
    for col in SLICE_COLUMNS:
        values = np.asarray(meta[col])
        for v in sorted(set(values[rows].tolist())):
            sel = rows & (values == v)
            result["slices"][f"{col}={v}"] = figures(sel, with_ci)
    return result


def comparison_at_baseline_sensitivity(
    prob: np.ndarray, y: np.ndarray, meta: Any, baseline: dict[str, Any]
) -> dict[str, float]:
    """Model alerts per 100 patient-days at the rule's row sensitivity."""
    target = float(baseline["overall"]["sensitivity"])
    thr = threshold_for_sensitivity(prob, y, target)
    op = operating_point(prob >= thr, y, meta)
    return {
        "baseline_sensitivity": target,
        "threshold": thr,
        "model_sensitivity": op["sensitivity"],
        "model_alerts_per_100_patient_days": op["alerts_per_100_patient_days"],
        "baseline_alerts_per_100_patient_days": float(
            baseline["overall"]["alerts_per_100_patient_days"]
        ),
    }


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    top = 0.0
    for name, (prob, y) in curves.items():
        mean_p, rate, count = quantile_reliability_curve(prob, y)
        ok = count > 0
        (line,) = ax.plot(mean_p[ok], rate[ok], "o-", label=name)
        for x, r, n in zip(mean_p[ok], rate[ok], count[ok], strict=True):
            ax.annotate(
                f"{int(n)}",
                (x, r),
                fontsize=6,
                color=line.get_color(),
                xytext=(2, 3),
                textcoords="offset points",
            )
        top = max(
            top, float(np.nanmax(mean_p[ok], initial=0)), float(np.nanmax(rate[ok], initial=0))
        )
    top = min(1.0, top * 1.1 + 0.01)
    ax.plot([0, top], [0, top], "k:", label="perfect")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("mean predicted probability (equal-count bins)")
    ax.set_ylabel("observed rate (72 h)")
    ax.set_title(
        "Reliability, 10 quantile bins; numbers: rows per bin (synthetic hold-out)", fontsize=8
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


def plot_roc_pr(scores: dict[str, np.ndarray], y: np.ndarray, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5), dpi=100)
    for name, s in scores.items():
        s = np.where(np.isinf(s), np.nan, s)
        s = np.nan_to_num(s, nan=np.nanmin(s) - 1 if np.isfinite(np.nanmin(s)) else 0.0)
        fpr, tpr, _ = roc_curve(y, s)
        prec, rec, _ = precision_recall_curve(y, s)
        ax1.plot(fpr, tpr, label=f"{name} ({weighted_auroc(s, y):.2f})")
        ax2.plot(rec, prec, label=name)
    ax1.plot([0, 1], [0, 1], "k:")
    ax1.set_xlabel("1 − specificity")
    ax1.set_ylabel("sensitivity")
    ax1.set_title("ROC (synthetic hold-out)")
    ax1.legend(fontsize=7, loc="lower right")
    ax2.set_xlabel("recall")
    ax2.set_ylabel("precision")
    ax2.set_title("Precision–recall")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
