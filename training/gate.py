"""The promotion gate: a challenger replaces the champion only if it is not worse, beyond
stated margins, on discrimination, calibration or any slice, on the same hold-out rows.

Written rule (also in training/README.md). Differences are paired: both models score the same
patients, and a bootstrap that resamples patients (all rows of a patient together) gives a
95 % interval for each difference, so noise cannot pass or fail a challenger by itself.

1. overall AUROC: the lower end of the 95 % interval of (challenger − champion) ≥ −0.01;
2. calibration: the upper end of the interval of the ECE difference ≤ 0.01, and the
   challenger's ECE ≤ 0.05 absolute;
3. Brier score: the upper end of the interval of the difference ≤ 0.005;
4. every slice (pathway, age band, sex) with at least 10 positive rows in the hold-out:
   challenger AUROC ≥ champion AUROC − 0.03;
5. the challenger was built for this code's feature spec (its artifact verifies);
6. fail closed: if the champion cannot be scored on the hold-out, nothing is promoted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from training.evaluation import (
    MIN_SLICE_POSITIVES,
    SLICE_COLUMNS,
    brier,
    ece,
    weighted_auroc,
)


@dataclass(frozen=True)
class GateMargins:
    auroc: float = 0.01
    ece: float = 0.01
    ece_max: float = 0.05
    brier: float = 0.005
    slice_auroc: float = 0.03
    slice_min_positives: int = MIN_SLICE_POSITIVES


@dataclass
class Criterion:
    name: str
    champion: float | None
    challenger: float
    limit: float
    passed: bool
    text: str


@dataclass
class GateDecision:
    passed: bool
    reason: str
    criteria: list[Criterion] = field(default_factory=list)
    margins: GateMargins = field(default_factory=GateMargins)

    def failed(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "criteria": [asdict(c) for c in self.criteria],
            "margins": asdict(self.margins),
        }


def gate_metrics(prob: np.ndarray, y: np.ndarray, meta: dict[str, np.ndarray]) -> dict[str, Any]:
    """The figures the gate compares, for one model's probabilities on the hold-out."""
    y = np.asarray(y)
    slices: dict[str, dict[str, float]] = {}
    for col in SLICE_COLUMNS:
        values = np.asarray(meta[col]).astype(str)
        for v in sorted(set(values.tolist())):
            sel = values == v
            slices[f"{col}={v}"] = {
                "auroc": weighted_auroc(prob[sel], y[sel]),
                "positives": float(y[sel].sum()),
            }
    return {
        "auroc": weighted_auroc(prob, y),
        "ece": ece(prob, y),
        "brier": brier(prob, y),
        "slices": slices,
    }


N_PAIRED_BOOTSTRAP = 200


def paired_differences(
    champion: np.ndarray,
    challenger: np.ndarray,
    y: np.ndarray,
    patient: np.ndarray,
    seed: int = 0,
    n_boot: int = N_PAIRED_BOOTSTRAP,
) -> dict[str, dict[str, float]]:
    """challenger − champion for AUROC, ECE and Brier: point and 95 % patient-bootstrap interval.

    Each resample draws patients with replacement and weights both models' rows alike, so the
    interval is of the paired difference, not of two independent estimates.
    """
    champion, challenger = np.asarray(champion, float), np.asarray(challenger, float)
    y = np.asarray(y).astype(np.int64)
    keys, inverse = np.unique(np.asarray(patient), return_inverse=True)
    rng = np.random.default_rng(seed)

    def weighted_ece(p: np.ndarray, w: np.ndarray) -> float:
        bins = np.minimum((p * 10).astype(int), 9)
        total = w.sum()
        out = 0.0
        for b in range(10):
            sel = bins == b
            wb = w[sel].sum()
            if wb > 0:
                out += wb / total * abs((p[sel] * w[sel]).sum() / wb - (y[sel] * w[sel]).sum() / wb)
        return float(out)

    def figures(w: np.ndarray) -> dict[str, float]:
        return {
            "auroc": weighted_auroc(challenger, y, w) - weighted_auroc(champion, y, w),
            "ece": weighted_ece(challenger, w) - weighted_ece(champion, w),
            "brier": float(
                (w * ((challenger - y) ** 2 - (champion - y) ** 2)).sum() / max(w.sum(), 1e-12)
            ),
        }

    point = figures(np.ones(len(y)))
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n_boot):
        counts = rng.multinomial(len(keys), np.full(len(keys), 1.0 / len(keys)))
        for k, v in figures(counts[inverse].astype(float)).items():
            if np.isfinite(v):
                draws[k].append(v)
    return {
        k: {
            "difference": point[k],
            "low": float(np.percentile(draws[k], 2.5)) if draws[k] else float("nan"),
            "high": float(np.percentile(draws[k], 97.5)) if draws[k] else float("nan"),
        }
        for k in point
    }


def apply_paired_gate(
    champion: dict[str, Any],
    challenger: dict[str, Any],
    paired: dict[str, dict[str, float]],
    margins: GateMargins | None = None,
) -> GateDecision:
    """The written rule with paired intervals for AUROC, ECE and Brier (slices as before)."""
    m = margins or GateMargins()
    criteria: list[Criterion] = []

    def interval(k: str) -> str:
        d = paired[k]
        return f"{d['difference']:+.3f} [95 % CI {d['low']:+.3f} to {d['high']:+.3f}]"

    low = paired["auroc"]["low"]
    criteria.append(
        Criterion(
            "AUROC (paired)",
            champion["auroc"],
            challenger["auroc"],
            -m.auroc,
            bool(low >= -m.auroc),
            f"AUROC difference {interval('auroc')}: lower end "
            f"{'≥' if low >= -m.auroc else '<'} −{m.auroc}",
        )
    )
    for key, margin in (("ece", m.ece), ("brier", m.brier)):
        high = paired[key]["high"]
        criteria.append(
            Criterion(
                f"{key.upper() if key == 'ece' else 'Brier'} (paired)",
                champion[key],
                challenger[key],
                margin,
                bool(high <= margin),
                f"{key.upper() if key == 'ece' else 'Brier'} difference {interval(key)}: upper "
                f"end {'≤' if high <= margin else '>'} {margin}",
            )
        )
    ok = bool(challenger["ece"] <= m.ece_max)
    criteria.append(
        Criterion(
            "ECE (absolute)",
            None,
            challenger["ece"],
            m.ece_max,
            ok,
            f"ECE (absolute): challenger {challenger['ece']:.3f} {'≤' if ok else '>'} {m.ece_max}",
        )
    )
    point = apply_gate(champion, challenger, m)
    criteria += [c for c in point.criteria if c.name.startswith("slice ")]
    failed = [c for c in criteria if not c.passed]
    if failed:
        reason = "gate failed: " + "; ".join(c.text for c in failed)
    else:
        reason = (
            f"gate passed: all {len(criteria)} criteria met on the same patients (AUROC "
            f"difference {interval('auroc')}, ECE difference {interval('ece')})"
        )
    return GateDecision(not failed, reason, criteria, m)


def apply_gate(
    champion: dict[str, Any], challenger: dict[str, Any], margins: GateMargins | None = None
) -> GateDecision:
    """Compare gate metrics; the reason names every failed criterion with its numbers."""
    m = margins or GateMargins()
    criteria: list[Criterion] = []

    def at_least(name: str, champ: float, chall: float, margin: float) -> None:
        limit = champ - margin
        ok = bool(chall >= limit)
        criteria.append(
            Criterion(
                name,
                champ,
                chall,
                limit,
                ok,
                f"{name}: challenger {chall:.4f} "
                f"{'≥' if ok else '<'} champion {champ:.4f} − {margin}",
            )
        )

    def at_most(name: str, champ: float | None, chall: float, limit: float, text: str) -> None:
        ok = bool(chall <= limit)
        criteria.append(
            Criterion(
                name,
                champ,
                chall,
                limit,
                ok,
                f"{name}: challenger {chall:.4f} {'≤' if ok else '>'} {text}",
            )
        )

    at_least("AUROC", champion["auroc"], challenger["auroc"], m.auroc)
    at_most(
        "ECE",
        champion["ece"],
        challenger["ece"],
        champion["ece"] + m.ece,
        f"champion {champion['ece']:.4f} + {m.ece}",
    )
    at_most("ECE (absolute)", None, challenger["ece"], m.ece_max, f"{m.ece_max}")
    at_most(
        "Brier",
        champion["brier"],
        challenger["brier"],
        champion["brier"] + m.brier,
        f"champion {champion['brier']:.4f} + {m.brier}",
    )
    for name, champ_slice in champion["slices"].items():
        chall_slice = challenger["slices"].get(name)
        if chall_slice is None:
            continue
        enough = min(champ_slice["positives"], chall_slice["positives"]) >= m.slice_min_positives
        if not enough or not (
            np.isfinite(champ_slice["auroc"]) and np.isfinite(chall_slice["auroc"])
        ):
            continue
        at_least(f"slice {name} AUROC", champ_slice["auroc"], chall_slice["auroc"], m.slice_auroc)
    failed = [c for c in criteria if not c.passed]
    if failed:
        reason = "gate failed: " + "; ".join(c.text for c in failed)
    else:
        reason = (
            f"gate passed: all {len(criteria)} criteria met (AUROC "
            f"{challenger['auroc']:.4f} vs {champion['auroc']:.4f}, ECE "
            f"{challenger['ece']:.4f} vs {champion['ece']:.4f})"
        )
    return GateDecision(not failed, reason, criteria, m)
