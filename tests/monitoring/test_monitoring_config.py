"""DriftConfig: files, environment, validation, per-feature methods."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from monitoring.config import CONFIG_ENV, DriftConfig


def test_defaults_choose_methods_by_feature_type():
    config = DriftConfig()
    assert config.method_for("spo2_pct_latest") == "wasserstein"
    assert config.method_for("age_band") == "jensenshannon"
    assert config.threshold_for("age_band") == config.categorical_threshold
    custom = DriftConfig(
        per_feature_method={"spo2_pct_latest": "psi"},
        per_feature_threshold={"spo2_pct_latest": 0.2},
    )
    assert (custom.method_for("spo2_pct_latest"), custom.threshold_for("spo2_pct_latest")) == (
        "psi",
        0.2,
    )


def test_from_json_and_toml_files(tmp_path):
    (tmp_path / "drift.json").write_text(json.dumps({"numeric_threshold": 0.3}))
    (tmp_path / "drift.toml").write_text(
        '[drift]\nnumeric_method = "ks"\nnumeric_threshold = 0.01\n'
        "[drift.expected_ranges]\nspo2 = [80.0, 100.0]\n"
    )
    assert DriftConfig.from_file(tmp_path / "drift.json").numeric_threshold == 0.3
    toml = DriftConfig.from_file(tmp_path / "drift.toml")
    assert toml.numeric_method == "ks" and toml.expected_ranges == {"spo2": (80.0, 100.0)}
    with pytest.raises(ValueError, match=r"json or \.toml"):
        DriftConfig.from_file(tmp_path / "drift.yaml")


def test_from_env_inline_path_or_defaults(tmp_path):
    assert DriftConfig.from_env({}) == DriftConfig()
    assert DriftConfig.from_env({CONFIG_ENV: '{"drift_share": 0.5}'}).drift_share == 0.5
    path = tmp_path / "d.json"
    path.write_text('{"min_window_rows": 50}')
    assert DriftConfig.from_env({CONFIG_ENV: str(path)}).min_window_rows == 50


@pytest.mark.parametrize(
    "bad",
    [
        {"categorical_features": ["no_such_feature"]},
        {"expected_ranges": {"pulse": (0, 1)}},
        {"feature_ranges": {"weight_kg_change_1d": (5, -5)}},
        {"numeric_method": "t-test-typo"},
        {"drift_share": 0},
        {"unknown_setting": 1},
    ],
)
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        DriftConfig.model_validate(bad)


def test_fingerprint_follows_settings():
    assert DriftConfig().fingerprint() == DriftConfig().fingerprint()
    assert DriftConfig(numeric_threshold=0.3).fingerprint() != DriftConfig().fingerprint()
