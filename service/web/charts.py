"""Inline SVG trend charts drawn on the server, with their text alternative and data table."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Any

from models.features import BASELINE_GAP_S, BASELINE_MIN_READINGS, BASELINE_WINDOW_S

WIDTH, HEIGHT = 640, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 52, 96, 14, 30


@dataclass
class Threshold:
    value: float
    level: str  # a pathway level id (e.g. red, yellow)
    label: str
    personal: bool = False
    y: float = 0.0


@dataclass
class Chart:
    measurement: str
    label: str
    unit: str
    start_s: int
    end_s: int
    points: list[tuple[int, float]]
    baseline: float | None
    thresholds: list[Threshold] = field(default_factory=list)
    decimals: int = 1
    # geometry, filled by layout()
    polyline: str = ""
    dots: list[tuple[float, float]] = field(default_factory=list)
    y_ticks: list[tuple[float, float]] = field(default_factory=list)
    x_ticks: list[tuple[float, int]] = field(default_factory=list)
    baseline_y: float | None = None
    width: int = WIDTH
    height: int = HEIGHT
    plot: dict[str, float] = field(default_factory=dict)

    @property
    def values(self) -> list[float]:
        return [v for _, v in self.points]


def personal_baseline(points: list[tuple[int, float]], at_s: int) -> float | None:
    """Median over the 14 days before ``at_s`` leaving out the last 24 h, as models/features does."""
    window = [v for t, v in points if at_s - BASELINE_WINDOW_S <= t < at_s - BASELINE_GAP_S]
    return float(median(window)) if len(window) >= BASELINE_MIN_READINGS else None


def _nice_range(lo: float, hi: float) -> tuple[float, float, float]:
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    span = hi - lo
    raw = span / 4
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 0.1
    step = min((s * magnitude for s in (1, 2, 2.5, 5, 10) if s * magnitude >= raw), default=raw)
    start = (lo // step) * step
    end = -(-hi // step) * step
    return start, end, step


def layout(chart: Chart) -> Chart:
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    candidates = chart.values + [t.value for t in chart.thresholds]
    if chart.baseline is not None:
        candidates.append(chart.baseline)
    lo, hi, step = _nice_range(min(candidates, default=0.0), max(candidates, default=1.0))
    span_s = max(chart.end_s - chart.start_s, 1)

    def x(t: int) -> float:
        return round(PAD_LEFT + (t - chart.start_s) / span_s * plot_w, 1)

    def y(v: float) -> float:
        return round(PAD_TOP + (hi - v) / (hi - lo) * plot_h, 1)

    chart.dots = [(x(t), y(v)) for t, v in chart.points]
    chart.polyline = " ".join(f"{a},{b}" for a, b in chart.dots)
    ticks: list[tuple[float, float]] = []
    v = lo
    while v <= hi + 1e-9 and len(ticks) < 12:
        ticks.append((y(v), round(v, 6)))
        v += step
    chart.y_ticks = ticks
    days = max(1, round(span_s / 86400))
    every = 1 if days <= 7 else (2 if days <= 14 else 5)
    chart.x_ticks = [
        (x(chart.end_s - d * 86400), chart.end_s - d * 86400) for d in range(0, days + 1, every)
    ]
    chart.baseline_y = y(chart.baseline) if chart.baseline is not None else None
    for th in chart.thresholds:
        th.y = y(th.value)
    chart.plot = {
        "left": PAD_LEFT,
        "top": PAD_TOP,
        "right": PAD_LEFT + plot_w,
        "bottom": PAD_TOP + plot_h,
        "width": plot_w,
        "height": plot_h,
    }
    return chart


def _band_level(bands: Any, value: float) -> str | None:
    for band in bands:
        if (
            (band.gt is None or value > band.gt)
            and (band.ge is None or value >= band.ge)
            and (band.lt is None or value < band.lt)
            and (band.le is None or value <= band.le)
        ):
            return band.level
    return None


def band_thresholds(
    doc: Any, measurement: str, level_labels: dict[str, str], age_years: float | None = None
) -> list[Threshold]:
    """Where the pathway's bands rules on this measurement step up to a more urgent level."""
    ranks = {lv.id: i for i, lv in enumerate(getattr(doc, "levels", ()))}
    eps = 1e-6
    seen: dict[float, Threshold] = {}
    for rule in getattr(doc, "rules", ()):
        if (
            getattr(rule, "type", None) != "bands"
            or getattr(rule, "measurement", None) != (measurement)
            or not getattr(rule, "enabled", True)
        ):
            continue
        for table in rule.all_tables():
            a_from = getattr(table, "age_from_years", None) or 0
            a_below = getattr(table, "age_below_years", None)
            if getattr(table, "on_oxygen", None) or (
                age_years is not None
                and not (a_from <= age_years and (a_below is None or age_years < a_below))
            ):
                continue  # the table for the patient's age, on air, is the one drawn
            for band in table.bands:
                if band.level is None:
                    continue
                edges = [
                    (band.lt, band.lt),
                    (band.le, (band.le or 0) + eps),
                    (band.ge, (band.ge or 0) - eps),
                    (band.gt, band.gt),
                ]
                for edge, outside in edges:
                    if edge is None:
                        continue
                    neighbour = _band_level(table.bands, float(outside))
                    if ranks.get(neighbour or "", -1) < ranks.get(band.level, 0):
                        current = seen.get(float(edge))
                        if current is None or ranks.get(band.level, 0) > ranks.get(
                            current.level, 0
                        ):
                            seen[float(edge)] = Threshold(
                                float(edge), band.level, level_labels.get(band.level, band.level)
                            )
    return sorted(seen.values(), key=lambda t: t.value)
