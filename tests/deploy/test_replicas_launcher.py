"""`make replicas` (deploy/replicas/run.py --check): migrations once, two replicas, a load balancer
that routes by /readyz; both replicas answer through it, and with one stopped the service stays
up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.replica_cluster import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_two_replicas_behind_the_balancer_and_one_can_stop(tmp_path: Path, artifact_dir: Path):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "TRIAGE_BALANCER_PORT": str(free_port()),
        "TRIAGE_REPLICAS_DIR": str(tmp_path),
        "TRIAGE_DATABASE_URL": "",  # a SQLite file in tmp_path: no shared state with other tests
        "TRIAGE_MODEL_DIR": str(artifact_dir),
        "TRIAGE_ENVIRONMENT": "test",
        "TRIAGE_DRIFT_SCHEDULE_HOURS": "0",
        "TRIAGE_RESCORE_SCHEDULE_HOURS": "0",
    }
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "deploy" / "replicas" / "run.py"), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "check passed" in result.stdout
    seen = result.stdout.split("replicas seen through the balancer: ")[1].split(";")[0]
    assert seen.count(":") == 2  # two distinct replicas (host:pid) answered
