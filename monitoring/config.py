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

from models.features import FEATURE_NAMES
from models.measurements import MEASUREMENTS, SYMPTOM_SCORE

CONFIG_ENV = "TRIAGE_DRIFT_CONFIG"

# Evidently method names whose score is a p-value (drift when the score is BELOW the threshold);
# every other method is a distance (drift when the score is at or above it).
P_VALUE_METHODS = frozenset(
    {
        "ks",
        "chisquare",
        "z",
        "t_test",
        "mannw",
        "anderson",
        "cramer_von_mises",
        "fisher_exact",
        "g_test",
        "epps_singleton",
        "empirical_mmd",
    }
)
NumericMethod = Literal[
    "wasserstein",
    "ks",
    "psi",
    "kl_div",
    "jensenshannon",
    "hellinger",
    "energy_distance",
    "anderson",
    "cramer_von_mises",
    "mannw",
    "t_test",
    "empirical_mmd",
    "epps_singleton",
]
CategoricalMethod = Literal[
    "jensenshannon",
    "chisquare",
    "psi",
    "kl_div",
    "hellinger",
    "z",
    "g_test",
    "fisher_exact",
]

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
        description="Evidently drift method for numeric features. 'wasserstein' is Evidently's "
        "normed Wasserstein distance (in reference standard deviations): it does not turn every "
        "tiny shift into drift on large windows the way p-value tests do.",
    )
    numeric_threshold: float = Field(
        default=0.25,
        gt=0,
        description="Drift when the numeric score reaches this (p-value: falls below). Higher "
        "than Evidently's 0.1 because rows are not independent: a patient is scored every day, "
        "so a window of 1200 rows holds ~400 patients' worth of information; 0.25 keeps "
        "unchanged windows of that size quiet (tests/monitoring).",
    )
    categorical_method: CategoricalMethod = Field(
        default="jensenshannon", description="Evidently drift method for categorical features."
    )
    categorical_threshold: float = Field(
        default=0.15,
        gt=0,
        description="Jensen-Shannon distance for categorical features. Above Evidently's 0.1: "
        "with ~300 patients the age-band mix of unchanged windows reaches 0.10 by chance.",
    )
    categorical_features: tuple[str, ...] = DEFAULT_CATEGORICAL_FEATURES
    per_feature_method: dict[str, str] = Field(default_factory=dict)
    per_feature_threshold: dict[str, float] = Field(default_factory=dict)

    drift_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Share of tested features that must drift for the verdict 'drift'.",
    )
    warning_min_features: int = Field(
        default=1,
        ge=1,
        description="This many drifted features (below drift_share) give 'warning'.",
    )
    strong_drift_factor: float = Field(
        default=2.0,
        gt=1,
        description="One feature whose distance score reaches this multiple of its threshold is "
        "'drift' on its own (a device fault moves one feature a lot). Distance methods only.",
    )

    pathway_mix_threshold: float = Field(
        default=0.1,
        gt=0,
        description="Jensen-Shannon distance of the pathway mix (e.g. more heart failure) above "
        "which the report names it. A changed mix alone gives 'warning'; with drifted features "
        "it is 'drift' (the model serves another population than it was validated on).",
    )
    prediction_method: NumericMethod = "wasserstein"
    prediction_threshold: float = Field(
        default=0.15,
        gt=0,
        description="Drift of the model's probability; prediction drift is 'drift'.",
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
    feature_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_FEATURE_RANGES)
    )

    min_window_rows: int = Field(
        default=500,
        ge=1,
        description="Fewer current rows than this: no verdict (InsufficientData). The default "
        "thresholds were set on windows of ~400 patients scored on 3 days (1200 rows).",
    )
    min_slice_rows: int = Field(
        default=300,
        ge=1,
        description="Slices smaller than this are skipped.",
    )
    min_values_per_feature: int = Field(
        default=30,
        ge=2,
        description="A feature with fewer non-missing values on either side is not tested.",
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
        unknown = (
            set(self.categorical_features)
            | set(self.per_feature_method)
            | set(self.per_feature_threshold)
            | set(self.feature_ranges)
        ) - features
        if unknown:
            raise ValueError(f"unknown feature names in drift config: {sorted(unknown)}")
        channels = set(MEASUREMENTS) | {SYMPTOM_SCORE}
        bad_channels = set(self.expected_ranges) - channels
        if bad_channels:
            raise ValueError(f"unknown measurements in expected_ranges: {sorted(bad_channels)}")
        for name, (lo, hi) in {**self.expected_ranges, **self.feature_ranges}.items():
            if not lo < hi:
                raise ValueError(f"range for {name} must have low < high, got ({lo}, {hi})")
        return self

    def method_for(self, feature: str) -> str:
        if feature in self.per_feature_method:
            return self.per_feature_method[feature]
        if feature in self.categorical_features:
            return self.categorical_method
        return self.numeric_method

    def threshold_for(self, feature: str) -> float:
        if feature in self.per_feature_threshold:
            return self.per_feature_threshold[feature]
        if feature in self.categorical_features:
            return self.categorical_threshold
        return self.numeric_threshold

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
