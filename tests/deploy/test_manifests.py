"""deploy/k8s: every manifest is valid Kubernetes (the official OpenAPI schemas, strict), sets only
real settings, runs only real commands, and keeps the pod locked down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer
import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
KUBERNETES_VERSION = "1.31.0"  # a version current platform teams run; the schemas ship offline


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


DOCUMENTS = _documents()


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for name, doc in DOCUMENTS:
        if doc["kind"] in ("Deployment", "Job"):
            specs.append((name, doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "CronJob":
            specs.append((name, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return specs


def test_the_manifests_are_all_there() -> None:
    kinds = {doc["kind"] for _, doc in DOCUMENTS}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "CronJob",
        "Secret",
        "ConfigMap",
    } <= kinds


@pytest.mark.parametrize(("name", "doc"), DOCUMENTS, ids=[n for n, _ in DOCUMENTS])
def test_manifest_is_valid_kubernetes(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_wrong_manifest() -> None:
    """The check above can fail: a misspelt field and a wrong type are refused."""
    deployment = next(doc for _, doc in DOCUMENTS if doc["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def _settings_env() -> list[str]:
    names = []
    for _, doc in DOCUMENTS:
        if doc["kind"] == "ConfigMap":
            names += [k for k in doc.get("data", {}) if k.startswith("TRIAGE_")]
        if doc["kind"] == "Secret":
            names += list(doc.get("stringData", {}))
    for _, spec in _pod_specs():
        for container in spec["containers"]:
            names += [e["name"] for e in container.get("env", [])]
    return names


def test_every_environment_variable_is_a_real_setting() -> None:
    fields = {f"TRIAGE_{name.upper()}" for name in Settings.model_fields}
    names = _settings_env()
    assert names, "the manifests set no settings"
    assert sorted(set(names) - fields) == []
    # Production needs these; a manifest without them would not start (Settings refuses).
    assert {
        "TRIAGE_ENVIRONMENT",
        "TRIAGE_DATABASE_URL",
        "TRIAGE_SESSION_SECRET",
        "TRIAGE_OIDC_ISSUER",
        "TRIAGE_IN_PROCESS_JOBS",
    } <= set(names)


def test_secrets_carry_placeholders_only() -> None:
    for _, doc in DOCUMENTS:
        if doc["kind"] == "Secret":
            for key, value in doc["stringData"].items():
                assert "CHANGE-ME" in value or ".invalid" in value, key


def _cli() -> Any:
    from service import cli

    cli._mount_job_commands()
    return typer.main.get_command(cli.app)


def test_every_container_runs_a_real_command() -> None:
    command = _cli()
    seen = []
    for name, spec in _pod_specs():
        for container in spec["containers"]:
            args = list(container["args"])
            group: Any = command
            while hasattr(group, "commands"):  # a command group (typer's own click types)
                sub = group.commands.get(args[0])
                assert sub is not None, (
                    f"{name}: `triage {' '.join(container['args'])}` is no command"
                )
                group, args = sub, args[1:]
            options = {opt for p in group.params for opt in getattr(p, "opts", [])}
            flags = [a for a in args if a.startswith("--")]
            assert set(flags) <= options, f"{name}: unknown options {set(flags) - options}"
            seen.append(" ".join(container["args"][:2]))
    assert any(s.startswith("serve") for s in seen) and any(s.startswith("migrate") for s in seen)
    assert any(s.startswith("rescore") for s in seen) and any(s == "drift run" for s in seen)
    assert "audit checkpoint" in seen


@pytest.mark.parametrize(("name", "spec"), _pod_specs(), ids=[n for n, _ in _pod_specs()])
def test_pods_run_locked_down(name: str, spec: dict[str, Any]) -> None:
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_deployment_probes_health_and_readiness() -> None:
    deployment = next(doc for _, doc in DOCUMENTS if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_in_process_jobs_off_means_no_scheduled_jobs() -> None:
    from service.jobs import default_background_jobs

    assert default_background_jobs(Settings(in_process_jobs=False)) == ()
    # rescore, drift reports, audit checkpoints, questionnaire dispatch (issue 18)
    assert len(default_background_jobs(Settings(in_process_jobs=True))) == 4


# Each in-process job and the `triage` command its CronJob runs: with TRIAGE_IN_PROCESS_JOBS=false
# a job without a CronJob would silently never run.
CRONJOB_OF_JOB = {
    "rescore": "rescore",
    "drift-reports": "drift run",
    "questionnaires": "questionnaires",
    "audit-checkpoint": "audit checkpoint",
    "storage-partitions": "storage partitions",
}


def test_every_in_process_job_has_a_cronjob() -> None:
    from service.jobs import default_background_jobs

    postgres = Settings(in_process_jobs=True, database_url="postgresql+psycopg://x@127.0.0.1/x")
    jobs = {job.__name__ for job in default_background_jobs(postgres)}
    assert jobs == set(CRONJOB_OF_JOB), (
        f"jobs without a CronJob mapping: {jobs ^ set(CRONJOB_OF_JOB)}"
    )
    commands = {
        " ".join(container["args"][:2])
        if container["args"][0] in {"drift", "audit", "storage"}
        else container["args"][0]
        for _, spec in _pod_specs()
        for container in spec["containers"]
    }
    missing = {job for job, command in CRONJOB_OF_JOB.items() if command not in commands}
    assert not missing, f"in-process jobs with no CronJob: {missing}"
