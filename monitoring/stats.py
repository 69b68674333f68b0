"""Drift scores and the thresholds they are judged by, calibrated to the window's size.

A fixed threshold cannot serve a window of 40 patients and one of 400 alike: the same unchanged
data moves further by chance in the small one. So each feature's threshold comes from the null
hypothesis itself: pseudo-windows of the window's *effective* size are drawn from the reference
(and a pseudo-reference of the reference's own effective size), their distance is computed the
way the real one is, and the thresholds are set so that an unchanged window has any feature
over its threshold in at most ``alpha`` of the draws (a family-wise rate over all features,
taken from the maximum of per-feature ranks, as in Westfall and Young's max-T procedure).

Rows are not independent: a patient contributes one row per day, and many features barely change
from day to day. The effective size of a sample is its number of rows divided by the design
effect ``1 + (m - 1) * ICC`` (Kish 1965), with ``m`` the size-weighted mean number of rows per
patient and ICC the within-patient correlation of that feature (one-way ANOVA estimator). Age
band, constant within a patient, ends up counted in patients; a daily-varying reading nearer to
patient-days.

numpy and scipy only; evidently draws the people's view of the same comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


def wasserstein(a: np.ndarray, b: np.ndarray, b_weights: np.ndarray | None = None) -> float:
    """Wasserstein-1 distance of two empirical distributions: the area between their CDFs."""
    a = np.sort(np.asarray(a, dtype=np.float64))
    order = np.argsort(b)
    b = np.asarray(b, dtype=np.float64)[order]
    wb = np.ones(len(b)) if b_weights is None else np.asarray(b_weights, dtype=np.float64)[order]
    support = np.union1d(a, b)
    cdf_a = np.searchsorted(a, support, side="right") / len(a)
    cum_b = np.concatenate([[0.0], np.cumsum(wb)])
    cdf_b = cum_b[np.searchsorted(b, support, side="right")] / cum_b[-1]
    return float(np.sum(np.abs(cdf_a - cdf_b)[:-1] * np.diff(support)))


def normed_wasserstein(
    reference: np.ndarray, current: np.ndarray, reference_weights: np.ndarray | None = None
) -> float:
    """Wasserstein-1 distance in reference standard deviations (Evidently's 'wasserstein')."""
    sd = weighted_sd(reference, reference_weights)
    return wasserstein(current, reference, reference_weights) / max(sd, 1e-3)


def jensen_shannon(
    reference: np.ndarray,
    current: np.ndarray,
    reference_weights: np.ndarray | None = None,
    categories: np.ndarray | None = None,
) -> float:
    """Jensen-Shannon distance (natural log) between two category histograms."""
    cats = categories if categories is not None else np.union1d(reference, current)
    ref_w = np.ones(len(reference)) if reference_weights is None else reference_weights
    p = np.array([ref_w[reference == c].sum() for c in cats], dtype=np.float64)
    q = np.array([(current == c).sum() for c in cats], dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    return js_distance(p / p.sum(), q / q.sum())


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance with natural logarithms (as scipy's, without importing it)."""
    mid = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / mid), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log(q / mid), 0.0).sum()
    return float(np.sqrt(max((kl_p + kl_q) / 2, 0.0)))


def distance(
    kind: str,
    reference: np.ndarray,
    current: np.ndarray,
    reference_weights: np.ndarray | None = None,
    categories: np.ndarray | None = None,
) -> float:
    if kind == "categorical":
        return jensen_shannon(reference, current, reference_weights, categories)
    return normed_wasserstein(reference, current, reference_weights)


def design_effect(values: np.ndarray, groups: np.ndarray | None) -> float:
    """Kish's design effect of clustered rows: 1 + (m - 1) * ICC; 1 when rows are independent."""
    finite = np.isfinite(values)
    if groups is None or finite.sum() < 3:
        return 1.0
    v, g = values[finite], groups[finite]
    _, inverse, sizes = np.unique(g, return_inverse=True, return_counts=True)
    k, n = len(sizes), len(v)
    if k < 2 or k == n:
        return 1.0
    means = np.bincount(inverse, weights=v) / sizes
    grand = v.mean()
    ss_between = float(np.sum(sizes * (means - grand) ** 2))
    ss_within = float(np.sum((v - means[inverse]) ** 2))
    ms_between = ss_between / (k - 1)
    ms_within = ss_within / (n - k) if n > k else 0.0
    n0 = (n - np.sum(sizes**2) / n) / (k - 1)
    denominator = ms_between + (n0 - 1) * ms_within
    icc = 1.0 if denominator <= 0 else (ms_between - ms_within) / denominator
    icc = float(np.clip(icc, 0.0, 1.0))
    m = float(np.sum(sizes**2) / n)
    return 1.0 + (m - 1.0) * icc


def distribution_design_effect(values: np.ndarray, groups: np.ndarray | None) -> float:
    """The largest design effect over the value, its rank and the indicators below its deciles.

    A distance between distributions reacts to the whole CDF, and a patient's readings can be
    more alike in their tails (the one patient whose weight jumps daily) than in their mean, so
    the effective size is judged on each part of the CDF and the smallest one is used.
    """
    finite = np.isfinite(values)
    if groups is None or finite.sum() < 3:
        return 1.0
    v, g = values[finite], groups[finite]
    candidates = [design_effect(v, g)]
    ranks = np.argsort(np.argsort(v, kind="stable"), kind="stable").astype(np.float64)
    candidates.append(design_effect(ranks, g))
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        cut = np.quantile(v, q)
        below = (v <= cut).astype(np.float64)
        if 0 < below.mean() < 1:
            candidates.append(design_effect(below, g))
    return max(candidates)


def effective_size(values: np.ndarray, groups: np.ndarray | None) -> float:
    """Non-missing rows divided by the design effect: what the sample is worth in independent rows."""
    n = int(np.isfinite(values).sum())
    return n / distribution_design_effect(values, groups) if n else 0.0


@dataclass(frozen=True)
class NullCalibration:
    """Per-feature thresholds and the null distribution's quantiles that produced them."""

    thresholds: dict[str, float]
    null_median: dict[str, float]
    level: float  # per-feature quantile used (the family-wise correction of alpha)
    draws: int
    alpha: float


MAX_SUPPORT = 300


def _null_scores(
    kind: str,
    values: np.ndarray,
    weights: np.ndarray,
    m_current: int,
    m_reference: int,
    draws: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Distances between pairs of samples drawn with replacement from the weighted reference.

    Drawing with replacement from a finite reference is drawing counts over its distinct
    values (a multinomial), and the Wasserstein-1 distance of two distributions on the same
    sorted support is the sum of |F_a - F_b| times the gaps: exact, and vectorised over draws.
    """
    if kind == "numeric" and np.unique(values).size > MAX_SUPPORT:
        # Merge neighbouring values into quantile bins (at their weighted mean): the distance
        # between two samples changes by less than a bin's width, the draws get 10x cheaper.
        edges = np.quantile(values, np.linspace(0, 1, MAX_SUPPORT + 1)[1:-1])
        bins = np.searchsorted(edges, values, side="right")
        sums = np.bincount(bins, weights=weights * values, minlength=MAX_SUPPORT)
        mass = np.bincount(bins, weights=weights, minlength=MAX_SUPPORT)
        used = mass > 0
        values, weights = sums[used] / mass[used], mass[used]
    support, inverse = np.unique(values, return_inverse=True)
    p = np.bincount(inverse, weights=weights, minlength=support.size)
    p = p / p.sum()
    a = rng.multinomial(m_current, p, size=draws) / m_current
    b = rng.multinomial(m_reference, p, size=draws) / m_reference
    if kind == "categorical":
        mid = (a + b) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            kl_a = np.where(a > 0, a * np.log(a / mid), 0.0).sum(axis=1)
            kl_b = np.where(b > 0, b * np.log(b / mid), 0.0).sum(axis=1)
        result: np.ndarray = np.sqrt(np.maximum((kl_a + kl_b) / 2, 0.0))
        return result
    gaps = np.diff(support)
    cdf_gap = np.abs(np.cumsum(a - b, axis=1)[:, :-1]) @ gaps
    return cdf_gap / max(weighted_sd(values, weights), 1e-3)


def weighted_sd(values: np.ndarray, weights: np.ndarray | None) -> float:
    if weights is None:
        return float(np.std(values))
    w = weights / weights.sum()
    mean = float(np.sum(w * values))
    return float(np.sqrt(np.sum(w * (values - mean) ** 2)))


def calibrate(
    columns: Mapping[str, tuple[str, np.ndarray, np.ndarray, float, float]],
    *,
    alpha: float,
    draws: int,
    seed: int,
    family_wise: bool = True,
) -> NullCalibration:
    """Thresholds under the null for every column at once.

    ``columns[name] = (kind, reference values (finite), reference weights, effective current
    size, effective reference size)``. Each draw takes a pseudo-window and a pseudo-reference
    from the (weighted) reference with replacement, of the effective sizes, and scores them.
    """
    rng = np.random.default_rng(seed)
    names = list(columns)
    if not names:
        return NullCalibration({}, {}, 1 - alpha, draws, alpha)
    scores = np.zeros((draws, len(names)))
    for j, name in enumerate(names):
        kind, values, weights, n_current, n_reference = columns[name]
        scores[:, j] = _null_scores(
            kind,
            values,
            weights,
            max(2, round(n_current)),
            max(2, round(n_reference)),
            draws,
            rng,
        )
    level = 1.0 - alpha
    if family_wise and len(names) > 1:
        # The quantile level at which the maximum over features of the per-feature rank stays
        # below in (1 - alpha) of the draws: any-feature false alarms at rate alpha.
        ranks = (np.argsort(np.argsort(scores, axis=0), axis=0) + 1) / draws
        level = float(np.quantile(ranks.max(axis=1), 1.0 - alpha))
    thresholds = {
        name: float(np.quantile(scores[:, j], level, method="higher"))
        for j, name in enumerate(names)
    }
    medians = {name: float(np.median(scores[:, j])) for j, name in enumerate(names)}
    return NullCalibration(thresholds, medians, level, draws, alpha)
