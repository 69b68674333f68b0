"""Drift-report configuration: methods, thresholds and data-quality limits, all from a file.

Thresholds are configuration, not code (issue 7 §4): the service passes a :class:`DriftConfig`
read from a JSON or TOML file (or the ``TRIAGE_DRIFT_CONFIG`` variable) into the report job.
The defaults are the ones the honest-detection tests in ``tests/monitoring`` hold to: no drift on
unchanged windows in at least 95 % of 20 seeds, drift named on a population shift and on a
device fault.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.features import AGE_BAND_LABELS, FEATURE_NAMES
from models.measurements import MEASUREMENTS, SYMPTOM_SCORE

CONFIG_ENV = "TRIAGE_DRIFT_CONFIG"

NumericMethod = Literal["wasserstein"]
CategoricalMethod = Literal["jensenshannon"]

# Clinically expected ranges in canonical units for adults and children in home follow-up. They
# are narrower than models.measurements' physiological limits (which the service refuses at
# ingestion) and are meant to catch a device or unit fault, not a sick patient: a sudden share of
# values outside them is a data-quality flag. A weight sent in pounds (×2.2) lands above 180 for
# most adults; a temperature in °F above 42.
DEFAULT_EXPECTED_RANGES: dict[str, tuple[float, float]] = {
    "spo2": (70.0, 100.0),
    "heart_rate": (30.0, 200.0),
    "respiratory_rate": (5.0, 50.0),
    "temperature": (34.0, 42.0),
    "systolic_bp": (60.0, 250.0),
    "weight": (2.0, 180.0),
    SYMPTOM_SCORE: (0.0, 10.0),
}
# Children's vital signs differ from adults': an infant breathes 30–60 times a minute and a pulse
# of 160 is ordinary at one year (Fleming et al., Lancet 2011, 1st–99th centiles, widened). Ranges
# per age band (models.features.AGE_BAND_LABELS) replace the adult ones for those rows, so an
# infant's respiratory rate of 52 /min is not flagged as a device fault.
DEFAULT_EXPECTED_RANGES_BY_AGE_BAND: dict[str, dict[str, tuple[float, float]]] = {
    "0": {"respiratory_rate": (15.0, 80.0), "heart_rate": (80.0, 220.0)},
    "1-4": {"respiratory_rate": (12.0, 60.0), "heart_rate": (60.0, 200.0)},
    "5-11": {"respiratory_rate": (10.0, 45.0), "heart_rate": (50.0, 170.0)},
    "12-17": {"respiratory_rate": (8.0, 40.0), "heart_rate": (40.0, 160.0)},
}
# Feature ranges beyond which a change is not physiology but a unit or device change. Weight:
# heart-failure decompensation shows as ~2 kg in 3 days (ESC 2021 heart-failure guideline,
# self-care advice); 5 kg in a day or 10 kg from baseline is fluid no body gains that fast.
DEFAULT_FEATURE_RANGES: dict[str, tuple[float, float]] = {
    "weight_kg_delta_baseline": (-10.0, 10.0),
    "weight_kg_change_1d": (-5.0, 5.0),
    "weight_kg_change_3d": (-8.0, 8.0),
    "temperature_c_delta_baseline": (-5.0, 5.0),
    "spo2_pct_delta_baseline": (-30.0, 30.0),
}
# Discrete features are compared as categories: a histogram of 7 age bands or 0–3 missed days
# is what a clinician reads, and distance methods on them are dominated by ties.
DEFAULT_CATEGORICAL_FEATURES = ("age_band", "missed_measurement_days_3d")


class DriftConfig(BaseModel):
    """Everything a drift report decides by: methods, thresholds, limits and output size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    numeric_method: NumericMethod = Field(
        default="wasserstein",
        description="How numeric features are compared: Evidently's normed Wasserstein distance "
        "(in reference standard deviations), which is also the effect size the verdict uses.",
    )
    categorical_method: CategoricalMethod = Field(
        default="jensenshannon",
        description="How categorical features (age band, missed days) are compared.",
    )
    categorical_features: tuple[str, ...] = DEFAULT_CATEGORICAL_FEATURES

    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="Family-wise false-alarm rate: an unchanged window has any feature (or the "
        "prediction) over its threshold in at most this share of windows. Thresholds come from "
        "the null on the reference at the window's effective size (monitoring.stats).",
    )
    null_draws: int = Field(
        default=600,
        ge=50,
        le=5000,
        description="Pseudo-windows drawn from the reference to set the thresholds.",
    )
    min_effect_numeric: float = Field(
        default=0.1,
        gt=0,
        description="Smallest numeric shift worth reporting, in reference standard deviations "
        "(normed Wasserstein): a large window makes trivial shifts significant.",
    )
    moderate_effect_numeric: float = Field(default=0.3, gt=0)
    large_effect_numeric: float = Field(default=0.6, gt=0)
    min_effect_categorical: float = Field(
        default=0.05, gt=0, description="Smallest Jensen-Shannon distance worth reporting."
    )
    moderate_effect_categorical: float = Field(default=0.1, gt=0)
    large_effect_categorical: float = Field(default=0.2, gt=0)
    drift_min_features: int = Field(
        default=3,
        ge=1,
        description="Features beyond chance with small effects only: 'warning' below this many, "
        "'drift' from it. One moderate or large effect is 'drift' on its own.",
    )
    high_severity_features: int = Field(
        default=5,
        ge=1,
        description="Severity 'high' from this many drifted features (or one large effect).",
    )

    pathway_mix_threshold: float = Field(
        default=0.1,
        gt=0,
        description="Jensen-Shannon distance of the pathway mix above which the report notes it. "
        "A changed mix is a note, never drift by itself: the reference is reweighted to the "
        "window's mix before features are compared.",
    )

    min_window_patients: int = Field(
        default=30,
        ge=2,
        description="Fewer patients in the window than this: no verdict.",
    )
    min_window_patient_days: int = Field(
        default=150,
        ge=2,
        description="Fewer patient-days (rows) in the window than this: no verdict.",
    )
    min_feature_patients: int = Field(
        default=20,
        ge=2,
        description="A feature measured in fewer patients of the window is not tested (and the "
        "report says so): 16 patients measuring respiratory rate say little about a population.",
    )
    min_slice_patients: int = Field(
        default=15,
        ge=2,
        description="Pathway or organisation slices with fewer patients are not examined.",
    )

    missing_rate_max_increase: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="Flag a feature or measurement whose missing share rises this much (absolute) "
        "above the reference.",
    )
    out_of_range_max_share: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Flag a measurement or feature with more than this share outside its "
        "expected range (e.g. 10 % of SpO2 values out of range).",
    )
    implausible_max_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of values beyond the physiological limits in models.measurements "
        "tolerated (the service refuses those at ingestion, so any is a fault).",
    )
    expected_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_EXPECTED_RANGES)
    )
    expected_ranges_by_age_band: dict[str, dict[str, tuple[float, float]]] = Field(
        default_factory=lambda: {
            k: dict(v) for k, v in DEFAULT_EXPECTED_RANGES_BY_AGE_BAND.items()
        },
        description="Expected ranges that replace the adult ones for rows of that age band.",
    )
    feature_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_FEATURE_RANGES)
    )

    min_values_per_feature: int = Field(
        default=30,
        ge=2,
        description="A feature with fewer non-missing reference values is not tested.",
    )
    min_outcomes: int = Field(
        default=50, ge=2, description="Performance needs this many known outcomes and both classes."
    )
    calibration_bins: int = Field(default=10, ge=2)
    min_auroc: float = Field(
        default=0.70,
        ge=0,
        le=1,
        description="Alert when AUROC on known outcomes falls below this.",
    )
    max_calibration_error: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Alert when |observed − predicted| event rate (calibration-in-the-large) or "
        "the expected calibration error exceeds this.",
    )
    classification_threshold: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Probability at or above which a row counts as positive.",
    )

    slice_by: tuple[Literal["pathway", "organisation"], ...] = ("pathway", "organisation")
    max_rows: int = Field(
        default=50_000,
        ge=100,
        description="Larger datasets are sampled (seeded, without replacement) to this many rows "
        "before Evidently sees them, as Evidently advises for large data.",
    )
    sample_seed: int = 0
    render_html: bool = True
    html_standalone: bool = Field(
        default=False,
        description="Embed Evidently's 3.5 MB JavaScript in every HTML report; otherwise the "
        "report loads it from html_library_url and stays small.",
    )
    html_library_url: str = Field(
        default="/api/v1/monitoring/evidently.js",
        description="Where a non-standalone HTML report loads Evidently's JavaScript from.",
    )

    @model_validator(mode="after")
    def _known_names(self) -> DriftConfig:
        features = set(FEATURE_NAMES)
        unknown = (set(self.categorical_features) | set(self.feature_ranges)) - features
        if unknown:
            raise ValueError(f"unknown feature names in drift config: {sorted(unknown)}")
        channels = set(MEASUREMENTS) | {SYMPTOM_SCORE}
        bad_channels = (
            set(self.expected_ranges).union(*self.expected_ranges_by_age_band.values()) - channels
        )
        bad_bands = set(self.expected_ranges_by_age_band) - set(AGE_BAND_LABELS)
        if bad_bands:
            raise ValueError(
                f"unknown age bands in expected_ranges_by_age_band: {sorted(bad_bands)}"
            )
        if bad_channels:
            raise ValueError(f"unknown measurements in expected_ranges: {sorted(bad_channels)}")
        ranges = [*self.expected_ranges.items(), *self.feature_ranges.items()]
        for band in self.expected_ranges_by_age_band.values():
            ranges += band.items()
        for name, (lo, hi) in ranges:
            if not lo < hi:
                raise ValueError(f"range for {name} must have low < high, got ({lo}, {hi})")
        return self

    def method_for(self, feature: str) -> str:
        return (
            self.categorical_method if feature in self.categorical_features else self.numeric_method
        )

    def fingerprint(self) -> str:
        """sha256 of the settings, stored with each report so a verdict can be re-derived."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_file(cls, path: Path) -> DriftConfig:
        """Read from ``.json`` or ``.toml`` (a ``[drift]`` table or top-level keys)."""
        path = Path(path)
        if path.suffix not in (".json", ".toml"):
            raise ValueError(f"{path}: drift configuration must be .json or .toml")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            data = tomllib.loads(text)
            data = data.get("drift", data)
        else:
            data = json.loads(text)
        return cls.model_validate(data)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DriftConfig:
        """From ``TRIAGE_DRIFT_CONFIG`` (a file path or inline JSON); defaults when unset."""
        value = (os.environ if environ is None else environ).get(CONFIG_ENV, "").strip()
        if not value:
            return cls()
        if value.startswith("{"):
            return cls.model_validate(json.loads(value))
        return cls.from_file(Path(value))
