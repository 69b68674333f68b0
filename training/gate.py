"""The promotion gate: a challenger replaces the champion only if it is not worse, beyond
stated margins, on discrimination, calibration or any slice, on the same hold-out rows.

Written rule (also in training/README.md):

1. overall AUROC: challenger ≥ champion − 0.01;
2. calibration: challenger ECE ≤ champion ECE + 0.01, and ≤ 0.05 absolute;
3. Brier score: challenger ≤ champion + 0.005;
4. every slice (pathway, age band, sex) with at least 10 positive rows in the hold-out:
   challenger AUROC ≥ champion AUROC − 0.03;
5. the challenger was built for this code's feature spec (its artifact verifies).
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
