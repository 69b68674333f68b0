"""DriftConfig: files, environment, validation, per-feature methods."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from monitoring.config import CONFIG_ENV, DriftConfig


def test_defaults_choose_methods_by_feature_type():
    # Fixed per-feature thresholds are gone: they come from the window's size (monitoring.stats).
    config = DriftConfig()
    assert config.method_for("spo2_pct_latest") == "wasserstein"
    assert config.method_for("age_band") == "jensenshannon"
    assert config.alpha == 0.05 and config.min_window_patients == 30
    # Infants breathe faster than adults: their own expected range.
    assert config.expected_ranges_by_age_band["0"]["respiratory_rate"][1] > 53


def test_from_json_and_toml_files(tmp_path):
    (tmp_path / "drift.json").write_text(json.dumps({"alpha": 0.01}))
    (tmp_path / "drift.toml").write_text(
        "[drift]\nmin_effect_numeric = 0.2\n[drift.expected_ranges]\nspo2 = [80.0, 100.0]\n"
    )
    assert DriftConfig.from_file(tmp_path / "drift.json").alpha == 0.01
    toml = DriftConfig.from_file(tmp_path / "drift.toml")
    assert toml.min_effect_numeric == 0.2 and toml.expected_ranges == {"spo2": (80.0, 100.0)}
    with pytest.raises(ValueError, match=r"json or \.toml"):
        DriftConfig.from_file(tmp_path / "drift.yaml")


def test_from_env_inline_path_or_defaults(tmp_path):
    assert DriftConfig.from_env({}) == DriftConfig()
    assert DriftConfig.from_env({CONFIG_ENV: '{"alpha": 0.1}'}).alpha == 0.1
    path = tmp_path / "d.json"
    path.write_text('{"min_window_patients": 50}')
    assert DriftConfig.from_env({CONFIG_ENV: str(path)}).min_window_patients == 50


@pytest.mark.parametrize(
    "bad",
    [
        {"categorical_features": ["no_such_feature"]},
        {"expected_ranges": {"pulse": (0, 1)}},
        {"feature_ranges": {"weight_kg_change_1d": (5, -5)}},
        {"numeric_method": "t-test-typo"},
        {"alpha": 0},
        {"expected_ranges_by_age_band": {"newborn": {"respiratory_rate": (30, 60)}}},
        {"unknown_setting": 1},
    ],
)
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        DriftConfig.model_validate(bad)


def test_fingerprint_follows_settings():
    assert DriftConfig().fingerprint() == DriftConfig().fingerprint()
    assert DriftConfig(alpha=0.01).fingerprint() != DriftConfig().fingerprint()
