"""`triage drift` as the monitoring package offers it (the service CLI mounts this app)."""

from __future__ import annotations

import json

import pytest
from monitoring_synth import N_CURRENT_PATIENTS, simulate_window
from typer.testing import CliRunner

from monitoring.cli import LIBRARY_FILE, make_app

runner = CliRunner()
WINDOW_ARGS = ["--window-start", "2026-01-01", "--window-end", "2026-01-31"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, reference):
    folder = tmp_path_factory.mktemp("cli")
    reference.to_npz(folder / "reference.npz")
    simulate_window(N_CURRENT_PATIENTS, seed=61, spo2_offset=-3.0).to_npz(folder / "current.npz")
    (folder / "drift.json").write_text('{"slice_by": []}')  # slices are tested elsewhere
    (folder / "quick.json").write_text('{"slice_by": [], "render_html": false}')
    return folder


def test_drift_writes_json_and_html_and_is_idempotent(files, tmp_path):
    args = [
        "drift",
        *WINDOW_ARGS,
        "--current",
        str(files / "current.npz"),
        "--reference",
        str(files / "reference.npz"),
        "--model-version",
        "1.0.0",
        "--config",
        str(files / "drift.json"),
        "--out",
        str(tmp_path),
    ]
    first = runner.invoke(make_app(), args)
    assert first.exit_code == 0, first.output
    assert "verdict: drift" in first.output
    assert "spo2_pct_latest" in first.output
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 3 and LIBRARY_FILE in written
    payload = json.loads(next(tmp_path.glob("*.json")).read_text(encoding="utf-8"))
    assert payload["verdict"] == "drift" and payload["model_version"] == "1.0.0"
    html = next(tmp_path.glob("*.html")).read_text(encoding="utf-8")
    assert f'<script src="{LIBRARY_FILE}"></script>' in html
    second = runner.invoke(make_app(), args)
    assert second.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == written  # same key, same files


def test_fail_on_drift_exits_non_zero_for_schedulers(files, tmp_path):
    result = runner.invoke(
        make_app(),
        [
            "drift",
            *WINDOW_ARGS,
            "--current",
            str(files / "current.npz"),
            "--reference",
            str(files / "reference.npz"),
            "--model-version",
            "1",
            "--out",
            str(tmp_path),
            "--config",
            str(files / "quick.json"),
            "--fail-on",
            "drift",
        ],
    )
    assert result.exit_code == 3


def test_demo_needs_a_simulator_and_uses_the_one_given(files, tmp_path, reference):
    plain = runner.invoke(
        make_app(), ["drift", *WINDOW_ARGS, "--demo", "unchanged", "--out", str(tmp_path)]
    )
    assert plain.exit_code != 0
    assert "simulator" in plain.output
    calls = []

    def demo_source(scenario, seed):
        calls.append((scenario, seed))
        return reference, simulate_window(N_CURRENT_PATIENTS, seed=seed)

    demo = runner.invoke(
        make_app(demo_source),
        [
            "drift",
            *WINDOW_ARGS,
            "--demo",
            "unchanged",
            "--seed",
            "62",
            "--out",
            str(tmp_path),
            "--config",
            str(files / "quick.json"),
        ],
    )
    assert demo.exit_code == 0, demo.output
    assert calls == [("unchanged", 62)]
    assert "verdict: ok" in demo.output


def test_exactly_one_source(files, tmp_path):
    both = runner.invoke(
        make_app(),
        ["drift", *WINDOW_ARGS, "--current", str(files / "current.npz"), "--demo", "unchanged"],
    )
    assert both.exit_code != 0


def test_register_adds_the_commands_to_another_app():
    import typer

    host = typer.Typer()

    @host.command("serve")
    def serve() -> None:
        """Stand-in for the service's own command."""

    from monitoring.cli import register

    register(host)
    help_text = runner.invoke(host, ["--help"]).output
    assert "drift" in help_text and "drift-summary" in help_text and "serve" in help_text


def test_summary_command_writes_the_markdown(tmp_path):
    (tmp_path / "reports.json").write_text(
        json.dumps(
            [
                {
                    "id": "r1",
                    "window_start": "2026-01-05T00:00:00Z",
                    "window_end": "2026-01-06T00:00:00Z",
                    "model_version": "1",
                    "verdict": "ok",
                }
            ]
        )
    )
    (tmp_path / "signoffs.json").write_text("[]")
    result = runner.invoke(
        make_app(),
        [
            "drift-summary",
            "--month",
            "2026-01",
            "--reports",
            str(tmp_path / "reports.json"),
            "--signoffs",
            str(tmp_path / "signoffs.json"),
            "--out",
            str(tmp_path / "gov"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "gov" / "drift-summary-2026-01.md").is_file()
