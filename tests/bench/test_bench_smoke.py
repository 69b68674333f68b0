"""Smoke tests for bench/: every module imports and keeps the convention; small self-checks run.

No timing asserts (the figures belong in `make bench`, not in tests). A bench module's optional
``smoke()`` is its own small-scale self-check; bench/run.py's pieces are checked on their own.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import numpy as np
import pytest

from bench import run as bench_run

MODULES = bench_run.discover()


def test_discovery_finds_the_scoring_bench() -> None:
    assert "bench_scoring" in MODULES
    assert all(name.startswith("bench_") for name in MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_and_exposes_main(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert callable(getattr(module, "main", None)), f"bench/{name}.py has no main()"
    smoke = getattr(module, "smoke", None)
    if smoke is not None:
        assert not inspect.signature(smoke).parameters, "smoke() takes no arguments"


@pytest.mark.parametrize(
    "name", [n for n in MODULES if hasattr(importlib.import_module(f"bench.{n}"), "smoke")]
)
def test_module_smoke(name: str) -> None:
    importlib.import_module(f"bench.{name}").smoke()


def test_rules_bench_helpers_on_one_patient() -> None:
    # bench_rules has no smoke(); its synthetic patient must stay valid input for the engine.
    from bench.bench_rules import per_call_us, synthetic_patient
    from models.rules import evaluate, load_shipped_pathways

    pathway = load_shipped_pathways()["copd"]
    patient = synthetic_patient(pathway, np.random.default_rng(0))
    assert per_call_us(lambda: evaluate(pathway, patient, 0.3), repeat=1, number=2) > 0


def test_time_limit_is_read_without_importing(tmp_path: Path) -> None:
    module = tmp_path / "bench_x.py"
    module.write_text("import does_not_exist\nTIME_LIMIT_S = 42\n")
    assert bench_run.declared_time_limit(module) == 42.0
    module.write_text("TIME_LIMIT_S: float = 7.5\n")
    assert bench_run.declared_time_limit(module) == 7.5
    module.write_text("x = 1\n")
    assert bench_run.declared_time_limit(module) is None
    assert bench_run.declared_time_limit(bench_run.BENCH_DIR / "bench_scoring.py") is not None


def test_report_keeps_markdown_and_fences_plain_text() -> None:
    from datetime import UTC, datetime

    runs = [
        bench_run.ModuleRun("bench_a", "ok", 1.0, "| a | b |\n|---|---|\n| 1 | 2 |\n", ""),
        bench_run.ModuleRun("bench_b", "ok", 2.0, "plain   aligned   text\n", ""),
        bench_run.ModuleRun("bench_c", "timed out after 5 s", 5.0, "", "Traceback: boom\n"),
    ]
    report = bench_run.render(runs, datetime(2026, 1, 1, tzinfo=UTC), "note")
    assert "| bench_a | ok | 1 |" in report
    assert "| bench_c | timed out after 5 s | 5 |" in report
    assert "\n| 1 | 2 |" in report  # Markdown stays a table
    assert "```\nplain   aligned   text\n```" in report  # plain text keeps its alignment
    assert "Traceback: boom" in report  # a failure shows why
    assert report.index("## bench_a") < report.index("## bench_b") < report.index("## bench_c")


def test_run_with_no_matching_module_writes_an_empty_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_NO_INSTALL", "1")  # never apt-get from a test
    out = tmp_path / "latest.md"
    assert bench_run.main(["--only", "no_such_module", "--output", str(out)]) == 0
    assert out.read_text().startswith("# Benchmark results")


def test_markdown_table_escapes_pipes() -> None:
    from bench.common import markdown_table

    table = markdown_table(["a", "b"], [["x|y", 1]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]
