"""What the engine evaluates: one patient's readings (:class:`PatientReadings`) or many
(:class:`ReadingsBatch`, long-format numpy arrays for the vectorised path).

Values are in the canonical unit of :mod:`models.measurements`; times are integer epoch
seconds. Categorical values are stored as codes (``on_oxygen``: 0 air / 1 oxygen;
``consciousness``: 0 alert / 1 CVPU); questionnaire items are signals
``q/<questionnaire id>/<linkId>`` with 0–3 points.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from models.rules.catalogue import (
    CATEGORY_SIGNALS,
    ITEM_MAX_POINTS,
    NUMERIC_SIGNALS,
    QUESTIONNAIRE_ITEMS,
    category_code,
    item_signal,
    redact,
)

Series = tuple[list[int], list[float]]


class ReadingsError(ValueError):
    """Input values the engine cannot use; the message names the field (never a fødselsnummer)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


def _numeric(signal: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReadingsError(f"{signal}: expected a number, got {value!r}")
    number = float(value)
    spec = NUMERIC_SIGNALS[signal]
    if not math.isfinite(number) or not spec.plausible_min <= number <= spec.plausible_max:
        raise ReadingsError(
            f"{signal}: {number:g} {spec.unit} is outside the plausible range "
            f"{spec.plausible_min:g}–{spec.plausible_max:g}"
        )
    return number


def _item_points(signal: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (0 <= value <= ITEM_MAX_POINTS)
    ):
        raise ReadingsError(f"{signal}: expected 0–{ITEM_MAX_POINTS} points, got {value!r}")
    return float(value)


def coerce_value(signal: str, value: object) -> float:
    """The stored float of a raw value for a signal; ReadingsError names what is wrong."""
    if signal in NUMERIC_SIGNALS:
        return _numeric(signal, value)
    if signal in CATEGORY_SIGNALS:
        try:
            return category_code(signal, value)
        except ValueError as exc:
            raise ReadingsError(str(exc)) from exc
    if signal.startswith("q/"):
        return _item_points(signal, value)
    known = sorted([*NUMERIC_SIGNALS, *CATEGORY_SIGNALS])
    raise ReadingsError(f"unknown measurement '{signal}'; known: {', '.join(known)}")


@dataclass
class PatientReadings:
    """One patient's readings as of ``as_of_s``.

    ``series`` maps a signal name to (times, values), both sorted by time. ``options`` holds
    the patient's pathway options (e.g. ``{"hypercapnic_failure": True}``); ``enrolled_s``
    keeps days before enrolment from counting as missed.
    """

    as_of_s: int
    age_years: float | None = None
    series: dict[str, Series] = field(default_factory=dict)
    options: dict[str, bool] = field(default_factory=dict)
    enrolled_s: int | None = None

    @classmethod
    def build(
        cls,
        as_of_s: int,
        age_years: float | None = None,
        measurements: Mapping[str, Iterable[tuple[int, object]]] | None = None,
        answers: Mapping[str, Mapping[str, Iterable[tuple[int, object]]]] | None = None,
        options: Mapping[str, bool] | None = None,
        enrolled_s: int | None = None,
    ) -> PatientReadings:
        """From ``{name: [(epoch s, value), …]}`` and ``{questionnaire: {linkId: [(t, v)]}}``.

        Checks names, units (canonical only), plausible ranges and item ids; sorts by time.
        """
        series: dict[str, Series] = {}
        for name, rows in (measurements or {}).items():
            series[name] = cls._series(name, rows)
        for questionnaire, items in (answers or {}).items():
            known = QUESTIONNAIRE_ITEMS.get(questionnaire)
            if known is None:
                raise ReadingsError(f"unknown questionnaire '{questionnaire}'")
            for item, rows in items.items():
                if item not in known:
                    raise ReadingsError(f"{questionnaire}: unknown item '{item}'")
                signal = item_signal(questionnaire, item)
                series[signal] = cls._series(signal, rows)
        return cls(
            int(as_of_s),
            None if age_years is None else float(age_years),
            series,
            dict(options or {}),
            enrolled_s,
        )

    @staticmethod
    def _series(signal: str, rows: Iterable[tuple[int, object]]) -> Series:
        pairs = sorted((int(t), coerce_value(signal, v)) for t, v in rows)
        return [t for t, _ in pairs], [v for _, v in pairs]

    @classmethod
    def from_latest_values(
        cls,
        values: Mapping[str, object],
        age_years: float | None = None,
        as_of_s: int | None = None,
        answers: Mapping[str, Mapping[str, object]] | None = None,
        options: Mapping[str, bool] | None = None,
    ) -> PatientReadings:
        """One reading per value, all taken at ``as_of_s`` (default: now): the dry run.

        ``values`` uses canonical names and units, e.g. ``{"respiratory_rate": 18, "spo2": 95,
        "on_oxygen": False, "systolic_bp": 120, "heart_rate": 80, "consciousness": "alert",
        "temperature": 37.0}``; ``answers`` is ``{questionnaire id: {linkId: points}}``.
        ``None`` values count as not measured. Enrolment is taken as ``as_of_s``, so
        missed-measurement rules stay quiet in a dry run.
        """
        now = int(time.time()) if as_of_s is None else int(as_of_s)
        return cls.build(
            now,
            age_years,
            measurements={k: [(now, v)] for k, v in values.items() if v is not None},
            answers={
                q: {i: [(now, v)] for i, v in items.items() if v is not None}
                for q, items in (answers or {}).items()
            },
            options=options,
            enrolled_s=now,
        )


@dataclass
class SignalColumns:
    """All patients' readings of one signal, sorted by (patient, time)."""

    patient: np.ndarray  # int64 index into the batch
    time_s: np.ndarray  # int64
    value: np.ndarray  # float64


@dataclass
class ReadingsBatch:
    """Many patients at once, for :func:`models.rules.evaluate_batch`."""

    as_of_s: np.ndarray  # int64 [n]
    age_years: np.ndarray  # float64 [n], NaN unknown
    series: dict[str, SignalColumns]
    enrolled_s: np.ndarray  # int64 [n], -1 unknown
    options: list[dict[str, bool]]

    @property
    def n(self) -> int:
        return len(self.as_of_s)

    @classmethod
    def from_long(
        cls,
        as_of_s: Sequence[int] | np.ndarray,
        age_years: Sequence[float] | np.ndarray,
        rows: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
        enrolled_s: Sequence[int] | np.ndarray | None = None,
        options: Sequence[Mapping[str, bool]] | None = None,
    ) -> ReadingsBatch:
        """From ``{signal: (patient index, epoch s, value)}`` arrays; values already coded."""
        n = len(as_of_s)
        series = {}
        for name, (patient, t, v) in rows.items():
            if (
                name not in NUMERIC_SIGNALS
                and name not in CATEGORY_SIGNALS
                and not (name.startswith("q/"))
            ):
                raise ReadingsError(f"unknown measurement '{name}'")
            patient = np.asarray(patient, dtype=np.int64)
            t = np.asarray(t, dtype=np.int64)
            order = np.lexsort((t, patient))
            series[name] = SignalColumns(
                patient[order], t[order], np.asarray(v, dtype=np.float64)[order]
            )
        return cls(
            np.asarray(as_of_s, dtype=np.int64),
            np.asarray(age_years, dtype=np.float64),
            series,
            np.full(n, -1, dtype=np.int64)
            if enrolled_s is None
            else np.asarray(enrolled_s, dtype=np.int64),
            [dict(o) for o in options] if options is not None else [{} for _ in range(n)],
        )

    @classmethod
    def from_patients(cls, patients: Sequence[PatientReadings]) -> ReadingsBatch:
        """Stack single-patient readings; concatenation happens in C (itertools.chain)."""
        times: dict[str, list[list[int]]] = {}
        values: dict[str, list[list[float]]] = {}
        owners: dict[str, list[int]] = {}
        for i, p in enumerate(patients):
            for name, (t, v) in p.series.items():
                times.setdefault(name, []).append(t)
                values.setdefault(name, []).append(v)
                owners.setdefault(name, []).append(i)
        rows = {}
        for name, chunks in times.items():
            lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks))
            total = int(lengths.sum())
            rows[name] = (
                np.repeat(np.asarray(owners[name], dtype=np.int64), lengths),
                np.fromiter(chain.from_iterable(chunks), dtype=np.int64, count=total),
                np.fromiter(chain.from_iterable(values[name]), dtype=np.float64, count=total),
            )
        return cls.from_long(
            [p.as_of_s for p in patients],
            [np.nan if p.age_years is None else p.age_years for p in patients],
            rows,
            [-1 if p.enrolled_s is None else p.enrolled_s for p in patients],
            [p.options for p in patients],
        )

    def patient(self, i: int) -> PatientReadings:
        """One patient back as :class:`PatientReadings` (the single path's input)."""
        series: dict[str, Series] = {}
        for name, cols in self.series.items():
            lo, hi = np.searchsorted(cols.patient, [i, i + 1])
            if hi > lo:
                series[name] = (cols.time_s[lo:hi].tolist(), cols.value[lo:hi].tolist())
        age = float(self.age_years[i])
        enrolled = int(self.enrolled_s[i])
        return PatientReadings(
            int(self.as_of_s[i]),
            None if math.isnan(age) else age,
            series,
            dict(self.options[i]),
            None if enrolled < 0 else enrolled,
        )
