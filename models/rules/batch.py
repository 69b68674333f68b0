"""The vectorised path: one program, thousands of patients, numpy throughout.

Every rule type computes, for all patients at once, the same raw outcome the single path
computes for one (see :mod:`models.rules.engine`), using the same float operations in the same
order (medians and minima, never sums of many terms), so both paths agree bit for bit.
Patients whose options or personal overrides differ get their own program and are evaluated
as their own group; fired-rule texts are only rendered when an :class:`Evaluation` is asked
for, so triage levels and scores for 10,000 patients stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.measurements import ON_OXYGEN
from models.rules.catalogue import DAY_S, HOUR_S, LATEST_LOOKBACK_S, NUMERIC_SIGNALS
from models.rules.engine import (
    MAD_TO_SD,
    CompiledRule,
    Evaluation,
    Program,
    assemble,
    check_probability,
    meets,
    program_for,
)
from models.rules.readings import ReadingsBatch
from models.rules.schema import (
    BaselineDeviationRule,
    ChangeRule,
    ConsecutiveRule,
    MissedRule,
    Override,
    Pathway,
    RuleSet,
)

_SPAN = np.int64(1) << np.int64(40)  # epoch seconds fit in 2**40; patient index above it


class _Signal:
    """Sorted readings of one signal addressed by (patient, time) keys."""

    def __init__(self, patient: np.ndarray, time_s: np.ndarray, value: np.ndarray) -> None:
        self.time_s = np.append(time_s, 0)
        self.value = np.append(value, np.nan)
        self.key = np.append(patient * _SPAN + time_s, np.iinfo(np.int64).max)

    def at(self, idx: np.ndarray, t: np.ndarray, side: str) -> np.ndarray:
        found: np.ndarray = np.searchsorted(self.key, idx * _SPAN + t, side=side)  # type: ignore[call-overload]
        return found


_EMPTY = _Signal(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


@dataclass
class _Query:
    batch: ReadingsBatch
    idx: np.ndarray  # patients of this group
    as_of: np.ndarray
    signals: dict[str, _Signal]
    cache: dict[str, Any] = field(default_factory=dict)

    def signal(self, name: str) -> _Signal:
        return self.signals.get(name, _EMPTY)

    def bounds(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(first reading of the patient, one past the last reading at or before as_of)."""
        key = "b:" + name
        if key not in self.cache:
            s = self.signal(name)
            self.cache[key] = (
                s.at(self.idx, np.zeros_like(self.as_of), "left"),
                s.at(self.idx, self.as_of, "right"),
            )
        bounds: tuple[np.ndarray, np.ndarray] = self.cache[key]
        return bounds

    def latest(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ok, time, value) of the current reading (within the lookback)."""
        key = "l:" + name
        if key not in self.cache:
            s = self.signal(name)
            start, end = self.bounds(name)
            j = end - 1
            ok = j >= start
            j = np.where(ok, j, len(s.key) - 1)
            t = s.time_s[j]
            ok &= t >= self.as_of - LATEST_LOOKBACK_S
            self.cache[key] = (ok, t, s.value[j])
        latest: tuple[np.ndarray, np.ndarray, np.ndarray] = self.cache[key]
        return latest


def _threshold_rank(cr: CompiledRule, values: np.ndarray) -> np.ndarray:
    rank = np.zeros(len(values), dtype=np.int64)
    done = np.zeros(len(values), dtype=bool)
    for r, threshold, _ in cr.thresholds:
        hit = ~done & meets(values, cr.rule.op, threshold)
        rank[hit] = r
        done |= hit
    return rank


def _padded(values: np.ndarray, start: np.ndarray, stop: np.ndarray, fill: float) -> np.ndarray:
    """Segments values[start:stop] as rows of a [n, longest] matrix padded with ``fill``."""
    lengths = stop - start
    width = int(lengths.max(initial=0))
    cols = np.arange(width)
    take = start[:, None] + cols[None, :]
    inside = cols[None, :] < lengths[:, None]
    return np.where(inside, values[np.where(inside, take, 0)], fill)


def _median_rows(matrix: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Row medians of the first ``lengths[i]`` entries of each row (rows padded with +inf)."""
    if matrix.shape[1] == 0:
        return np.full(len(lengths), np.nan)
    s = np.sort(matrix, axis=1)
    k = np.maximum(lengths, 1)
    rows = np.arange(len(k))
    median: np.ndarray = (s[rows, (k - 1) // 2] + s[rows, k // 2]) / 2.0
    return median


# Each function returns (evaluable, columns): the columns are the raw outcome tuple's fields.


def _bands(cr: CompiledRule, q: _Query) -> tuple[np.ndarray, list[np.ndarray]]:
    ok, t, v = q.latest(str(cr.signal))
    o2_ok, _, o2_v = q.latest(ON_OXYGEN)
    on_o2 = o2_ok & (o2_v == 1.0)
    age = q.batch.age_years[q.idx]
    n = len(q.idx)
    table = np.full(n, -1, dtype=np.int64)
    for ti, (a_from, a_below, o2, _) in enumerate(cr.tables):
        m = table == -1
        if o2 is not None:
            m &= on_o2 == o2
        if a_from is not None:
            m &= age >= a_from  # NaN (unknown age) compares False, as in the single path
        if a_below is not None:
            m &= age < a_below
        table[m] = ti
    band = np.full(n, -1, dtype=np.int64)
    rank = np.zeros(n, dtype=np.int64)
    points = np.zeros(n, dtype=np.int64)
    for ti, (_, _, _, bands) in enumerate(cr.tables):
        sel = ok & (table == ti)
        for bi, (lo, lo_incl, hi, hi_incl, r, p) in enumerate(bands):
            m = sel & (band == -1)
            if lo is not None:
                m &= (v >= lo) if lo_incl else (v > lo)
            if hi is not None:
                m &= (v <= hi) if hi_incl else (v < hi)
            band[m] = bi
            rank[m] = r
            points[m] = p
    return ok & (band >= 0), [rank, points, t, v, table, band]


def _category(cr: CompiledRule, q: _Query) -> tuple[np.ndarray, list[np.ndarray]]:
    ok, t, v = q.latest(str(cr.signal))
    code = np.where(ok, v, 0).astype(np.int64)
    return ok, [np.asarray(cr.cat_ranks)[code], np.asarray(cr.cat_points)[code], t, v]


def _baseline(cr: CompiledRule, q: _Query) -> tuple[np.ndarray, list[np.ndarray]]:
    rule: BaselineDeviationRule = cr.rule
    name = str(cr.signal)
    ok, t, v = q.latest(name)
    s = q.signal(name)
    start = s.at(q.idx, q.as_of - int(rule.window_days * DAY_S), "left")
    stop = s.at(q.idx, q.as_of - int(rule.gap_hours * HOUR_S), "left")
    lengths = stop - start
    ok = ok & (lengths >= rule.min_readings)
    start, stop, lengths = start[ok], stop[ok], lengths[ok]
    window = _padded(s.value, start, stop, np.inf)
    baseline_ok = _median_rows(window, lengths)
    n = len(q.idx)
    baseline = np.full(n, np.nan)
    baseline[ok] = baseline_ok
    dev = v - baseline
    z = np.full(n, np.nan)
    metric = dev
    if rule.mode == "sd":
        inside = np.arange(window.shape[1])[None, :] < lengths[:, None]
        absdev = np.where(inside, np.abs(window - baseline_ok[:, None]), np.inf)
        mad = _median_rows(absdev, lengths)
        sd = np.maximum(MAD_TO_SD * mad, NUMERIC_SIGNALS[name].sd_floor)
        z[ok] = dev[ok] / sd
        metric = z
    return ok, [_threshold_rank(cr, metric), t, v, baseline, dev, z]


def _change(cr: CompiledRule, q: _Query) -> tuple[np.ndarray, list[np.ndarray]]:
    rule: ChangeRule = cr.rule
    name = str(cr.signal)
    ok, t, v = q.latest(name)
    s = q.signal(name)
    _, end = q.bounds(name)
    start = s.at(q.idx, t - int(rule.window_hours * HOUR_S), "left")
    ok = ok & (end - 1 > start)
    rise = rule.op in (">", ">=")
    ref = np.full(len(q.idx), np.nan)
    if ok.any():
        window = _padded(s.value, start[ok], end[ok] - 1, np.inf if rise else -np.inf)
        ref[ok] = window.min(axis=1) if rise else window.max(axis=1)
    change = v - ref
    return ok, [_threshold_rank(cr, change), t, v, ref, change]


def _consecutive(cr: CompiledRule, q: _Query) -> tuple[np.ndarray, list[np.ndarray]]:
    rule: ConsecutiveRule = cr.rule
    name = str(cr.signal)
    ok, _, _ = q.latest(name)
    s = q.signal(name)
    first, end = q.bounds(name)
    cols = end[:, None] - rule.count + np.arange(rule.count)[None, :]
    enough = (end - rule.count >= first) & ok
    cols = np.where(enough[:, None], cols, len(s.key) - 1)
    times, values = s.time_s[cols], s.value[cols]
    enough &= times[:, 0] >= q.as_of - int(rule.window_hours * HOUR_S)
    rank = np.zeros(len(q.idx), dtype=np.int64)
    done = ~enough
    for r, threshold, _ in cr.thresholds:
        hit = ~done & meets(values, rule.op, threshold).all(axis=1)
        rank[hit] = r
        done |= hit
    return ok, [rank, times, values, enough]


def _questionnaire(cr: CompiledRule, q: _Query) -> tuple[np.ndarray, list[np.ndarray]]:
    ok, t, v = q.latest(str(cr.signal))
    return ok, [_threshold_rank(cr, v), t, v]


def _missed(cr: CompiledRule, q: _Query) -> tuple[np.ndarray, list[np.ndarray]]:
    rule: MissedRule = cr.rule
    name = str(cr.signal)
    s = q.signal(name)
    first, end = q.bounds(name)
    enrolled = q.batch.enrolled_s[q.idx]
    zeros = np.zeros(len(q.idx), dtype=np.int64)
    if rule.measure == "hours_since_last":
        has = end - 1 >= first
        since = np.where(has, s.time_s[np.where(has, end - 1, len(s.key) - 1)], enrolled)
        ok = has | (enrolled >= 0)
        hours = (q.as_of - since) / HOUR_S
        return ok, [_threshold_rank(cr, hours), hours, zeros, zeros]
    window_start = q.as_of - int(rule.window_hours * HOUR_S)
    ok = ~((enrolled >= 0) & (enrolled > window_start))
    received = end - s.at(q.idx, window_start, "right")
    missed = np.maximum(0, cr.expected - received).astype(np.float64)
    return ok, [_threshold_rank(cr, missed), missed, zeros + cr.expected, received]


_VECTOR = {
    "bands": _bands,
    "category": _category,
    "baseline_deviation": _baseline,
    "change": _change,
    "consecutive": _consecutive,
    "questionnaire": _questionnaire,
    "missed": _missed,
}


@dataclass
class _GroupResult:
    program: Program
    idx: np.ndarray
    ok: list[np.ndarray]  # per rule: evaluable
    cols: list[list[np.ndarray]]  # per rule: raw outcome columns
    missing: list[np.ndarray]  # per latest signal: no current reading


def _run_group(
    program: Program, batch: ReadingsBatch, idx: np.ndarray, signals: dict[str, _Signal]
) -> _GroupResult:
    q = _Query(batch, idx, batch.as_of_s[idx], signals)
    oks: list[np.ndarray] = []
    cols: list[list[np.ndarray]] = []
    n = len(idx)
    for cr in program.rules:
        kind = cr.rule.type
        if kind == "score":
            dep_ok = [oks[d] for d in cr.deps]
            pts = np.stack([cols[d][1] for d in cr.deps])
            have = np.stack(dep_ok)
            ok = np.asarray(have.any(axis=0))
            if cr.rule.aggregate == "max":
                score = np.where(have, pts, np.iinfo(np.int64).min).max(axis=0)
            else:
                score = np.where(have, pts, 0).sum(axis=0)
            score = np.where(ok, score, 0)
            oks.append(ok)
            cols.append([_threshold_rank(cr, score.astype(np.float64)), score])
        elif kind == "combination":
            fired = [oks[d] & (cols[d][0] > 0) for d in cr.deps]
            complete = len(cr.deps) == len(cr.rule.rules)
            if cr.rule.require == "all":
                hit = np.logical_and.reduce(fired) if fired and complete else np.zeros(n, bool)
            else:
                hit = np.logical_or.reduce(fired) if fired else np.zeros(n, bool)
            oks.append(np.ones(n, dtype=bool))
            cols.append([np.where(hit, cr.level_rank, 0)])
        else:
            ok, c = _VECTOR[kind](cr, q)
            oks.append(ok)
            cols.append(c)
    missing = [~q.latest(s)[0] for s in program.latest_signals]
    return _GroupResult(program, idx, oks, cols, missing)


def _raw(
    cr: CompiledRule, ok: np.ndarray, cols: list[np.ndarray], j: int
) -> tuple[Any, ...] | None:
    """Row ``j`` of a rule's columns as the single path's raw tuple (same Python types)."""
    if not ok[j]:
        return None
    kind = cr.rule.type
    if kind == "bands":
        r, p, t, v, ti, bi = (c[j] for c in cols)
        return (int(r), int(p), int(t), float(v), int(ti), int(bi))
    if kind == "category":
        r, p, t, v = (c[j] for c in cols)
        return (int(r), int(p), int(t), float(v))
    if kind == "baseline_deviation":
        r, t, v, b, d, z = (c[j] for c in cols)
        return (int(r), int(t), float(v), float(b), float(d), float(z))
    if kind == "change":
        r, t, v, ref, ch = (c[j] for c in cols)
        return (int(r), int(t), float(v), float(ref), float(ch))
    if kind == "consecutive":
        rank, times, values, enough = cols
        if not enough[j]:
            return (0, (), ())
        return (int(rank[j]), tuple(int(x) for x in times[j]), tuple(float(x) for x in values[j]))
    if kind == "questionnaire":
        r, t, v = (c[j] for c in cols)
        return (int(r), int(t), float(v))
    if kind == "missed":
        r, metric, expected, received = (c[j] for c in cols)
        return (int(r), float(metric), int(expected), int(received))
    if kind == "score":
        return (int(cols[0][j]), int(cols[1][j]))
    return (int(cols[0][j]),)


@dataclass
class BatchEvaluation:
    """Results for every patient of a batch: levels and scores as arrays, and each patient's
    full :class:`Evaluation` (with texts) on request."""

    level_rank: np.ndarray  # int64 [n]
    level: list[str]
    scores: dict[str, np.ndarray]  # float64 [n], NaN where not computed
    _groups: list[_GroupResult]
    _where: np.ndarray  # [n, 2]: group, position in group
    _probability: list[float | None]
    _as_of: np.ndarray
    _ignored: list[tuple[Override, ...]]

    def __len__(self) -> int:
        return len(self.level)

    def evaluation(self, i: int) -> Evaluation:
        """Patient ``i``'s Evaluation: identical to :func:`models.rules.evaluate` on it."""
        g = self._groups[int(self._where[i, 0])]
        j = int(self._where[i, 1])
        raws = [
            _raw(cr, ok, cols, j)
            for cr, ok, cols in zip(g.program.rules, g.ok, g.cols, strict=True)
        ]
        missing = [s for s, m in zip(g.program.latest_signals, g.missing, strict=True) if m[j]]
        return assemble(
            g.program, raws, self._probability[i], int(self._as_of[i]), missing, self._ignored[i]
        )

    def evaluations(self) -> list[Evaluation]:
        return [self.evaluation(i) for i in range(len(self))]


def run_batch(
    doc: Pathway | RuleSet,
    batch: ReadingsBatch,
    probabilities: Sequence[float | None] | np.ndarray | None = None,
    overrides: Mapping[int, Sequence[Override]] | None = None,
) -> BatchEvaluation:
    """Evaluate a document for every patient of the batch (see models.rules.evaluate_batch)."""
    n = batch.n
    probs: list[float | None] = [None] * n
    if probabilities is not None:
        if len(probabilities) != n:
            raise ValueError(f"{len(probabilities)} probabilities for {n} patients")
        probs = [
            None
            if p is None or (isinstance(p, float) and math.isnan(p))
            else check_probability(float(p))
            for p in probabilities
        ]

    # Group patients by program: options and active overrides decide which rules run.
    default = program_for(doc)
    programs: dict[int, Program] = {id(default): default}
    group_of = np.zeros(n, dtype=np.int64)
    keys = [id(default)]
    ignored: list[tuple[Override, ...]] = [()] * n
    patient_options = batch.options
    for i in range(n):
        mine = (overrides or {}).get(i, ())
        if not mine and not patient_options[i]:
            continue
        as_of = int(batch.as_of_s[i])
        active = tuple(o for o in mine if o.active(as_of))
        ignored[i] = tuple(o for o in mine if not o.active(as_of))
        program = program_for(doc, patient_options[i], active)
        key = id(program)
        if key not in programs:
            programs[key] = program
            keys.append(key)
        group_of[i] = keys.index(key)

    signals = {name: _Signal(c.patient, c.time_s, c.value) for name, c in batch.series.items()}
    groups: list[_GroupResult] = []
    where = np.zeros((n, 2), dtype=np.int64)
    level_rank = np.zeros(n, dtype=np.int64)
    level: list[str] = [""] * n
    scores: dict[str, np.ndarray] = {}
    p_arr = np.array([np.nan if p is None else p for p in probs])
    for gi, key in enumerate(keys):
        idx = np.flatnonzero(group_of == gi)
        if len(idx) == 0:
            groups.append(_GroupResult(programs[key], idx, [], [], []))
            continue
        program = programs[key]
        result = _run_group(program, batch, idx, signals)
        groups.append(result)
        where[idx, 0] = gi
        where[idx, 1] = np.arange(len(idx))
        rule_rank = np.zeros(len(idx), dtype=np.int64)
        for cr, ok, cols in zip(program.rules, result.ok, result.cols, strict=True):
            if cr.rule.type == "score":
                arr = scores.setdefault(cr.rule.score_key or cr.id, np.full(n, np.nan))
                arr[idx] = np.where(ok, cols[1], np.nan)
            if cr.rule.triage:
                rule_rank = np.maximum(rule_rank, np.where(ok, cols[0], 0))
        model_rank = np.zeros(len(idx), dtype=np.int64)
        p = p_arr[idx]
        assigned = np.isnan(p)
        for rank, threshold in program.model_thresholds:
            hit = ~assigned & (p >= threshold)
            model_rank[hit] = min(rank, program.model_max_rank)
            assigned |= hit
        final = np.maximum(rule_rank, model_rank)
        level_rank[idx] = final
        ids = [lv.id for lv in program.levels]
        for i, r in zip(idx.tolist(), final.tolist(), strict=True):
            level[i] = ids[r]
    return BatchEvaluation(level_rank, level, scores, groups, where, probs, batch.as_of_s, ignored)
