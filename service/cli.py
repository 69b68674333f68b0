"""`triage`: the one composition root. Serves the app, runs the demo, issues dev tokens, and mounts
the training and monitoring commands (train, evaluate, promote, drift …)."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from service.config import Settings

app = typer.Typer(help="Triage and decision support for digital home follow-up.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
log = logging.getLogger("triage.cli")

DEMO_SEED = 20261125
DEMO_UNITS = {"copd": "lungepoliklinikk", "heart-failure": "hjertepoliklinikk",
              "post-operative": "kirurgisk-poliklinikk", "oncology": "kreftpoliklinikk",
              "paediatric": "barnepoliklinikk"}


def _champion_resolver(uri: str, name: str, dest: Path) -> Path:
    # Imported on use only: mlflow is needed just when a registry is configured.
    from training.registry import resolve_champion

    return resolve_champion(uri, name, dest)


def build_app(settings: Settings | None = None) -> Any:
    """The production app: create_app plus the registry resolver and background jobs."""
    from service.app import create_app
    from service.jobs import default_background_jobs

    settings = settings or Settings()
    return create_app(settings, champion_resolver=_champion_resolver,
                      background_jobs=default_background_jobs(settings))


def _migrate(settings: Settings) -> None:
    from service.db.engine import migrate

    migrate(settings.resolved_database_url)


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    settings = Settings()
    _migrate(settings)
    typer.echo("database is at the latest schema")


@app.command()
def serve(host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port")] = 8000,
          workers: Annotated[int, typer.Option(help="Worker processes (one ONNX thread each)")]
          = 1) -> None:
    """Serve the API (applies pending migrations first)."""
    import uvicorn

    settings = Settings()
    _migrate(settings)
    if workers > 1:
        uvicorn.run("service.cli:build_app", factory=True, host=host, port=port,
                    workers=workers, log_config=None)
    else:
        uvicorn.run(build_app(settings), host=host, port=port, log_config=None)


@app.command()
def token(role: Annotated[str, typer.Option(help="clinician | ml-engineer | compliance | "
                                            "integration | admin")],
          org: Annotated[str | None, typer.Option(help="Organisation number")] = None,
          unit: Annotated[list[str] | None, typer.Option(help="Unit (repeat); none: every unit")]
          = None,
          subject: Annotated[str | None, typer.Option(help="HPR number / client id")] = None
          ) -> None:
    """Development mode only: print a bearer token for a role."""
    from service.security.principal import Role
    from service.security.tokens import DEV_ORGANISATION, issue_dev_token

    settings = Settings()
    try:
        typer.echo(issue_dev_token(settings, Role(role), org or DEV_ORGANISATION,
                                   list(unit) if unit else None, subject))
    except (RuntimeError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def load_demo_cohort(base_url: str, settings: Settings, n_patients: int = 40, days: int = 21,
                     seed: int = DEMO_SEED) -> dict[str, int]:
    """Feed a synthetic cohort through the real HTTP API: enrol, then FHIR batch Bundles.

    Re-running is harmless: enrolment answers 409 for known patients and every message is
    idempotent by its identifier (ids carry the cohort's start date).
    """
    import httpx

    from service.security.principal import Role
    from service.security.tokens import DEV_ORGANISATION, issue_dev_token
    from training.simulator import cohort_to_fhir, fhir_bundles, simulate_cohort

    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=days)
    cohort = simulate_cohort(n_patients, days, seed, start=start)
    integration = issue_dev_token(settings, Role.INTEGRATION, DEV_ORGANISATION)
    headers = {"Authorization": f"Bearer {integration}"}
    counts = {"enrolled": 0, "already_enrolled": 0, "resources": 0, "refused": 0}
    tag = start.strftime("%Y%m%d")
    now_s = time.time()
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
        for p in cohort.patients:
            body = {"identifier": p.identifier, "birth_date": p.birth_date.isoformat(),
                    "sex": p.sex, "pathway": p.pathway, "organisation": DEV_ORGANISATION,
                    "unit": DEMO_UNITS.get(p.pathway, "hjemmeoppfolging")}
            r = http.post("/api/v1/patients", json=body)
            if r.status_code == 201:
                counts["enrolled"] += 1
            elif r.status_code == 409:
                counts["already_enrolled"] += 1
            else:
                raise RuntimeError(f"enrolment refused ({r.status_code}): {r.text[:200]}")

        def by_identifier(p: Any) -> dict[str, Any]:
            return {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1",
                                   "value": p.identifier}}

        def retagged(resources: Any) -> Any:
            for resource in resources:
                for ident in ([resource.get("identifier")] if isinstance(
                        resource.get("identifier"), dict) else resource.get("identifier", [])):
                    ident["value"] = f"{tag}-{ident['value']}"
                when = resource.get("effectiveDateTime") or resource.get("authored")
                if when and datetime.fromisoformat(when).timestamp() > now_s:
                    continue  # the simulated day is not over yet: tomorrow's readings wait
                yield resource

        for bundle in fhir_bundles(retagged(cohort_to_fhir(cohort, by_identifier)), 200):
            r = http.post("/fhir", content=json.dumps(bundle),
                          headers={"Content-Type": "application/fhir+json"})
            r.raise_for_status()
            for entry in r.json()["entry"]:
                ok = entry["response"]["status"].startswith(("200", "201"))
                counts["resources" if ok else "refused"] += 1
    return counts


@app.command()
def demo(host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
         port: Annotated[int, typer.Option(help="TCP port")] = 8000,
         patients: Annotated[int, typer.Option(help="Synthetic patients to enrol")] = 40,
         days: Annotated[int, typer.Option(help="Days of history per patient")] = 21) -> None:
    """Migrate, serve, and feed a synthetic demo cohort through the ingestion API."""
    import httpx
    import uvicorn

    from service.security.principal import Role
    from service.security.tokens import issue_dev_token

    settings = Settings()
    _migrate(settings)
    server = uvicorn.Server(uvicorn.Config(build_app(settings), host=host, port=port,
                                           log_config=None))
    base_url = f"http://{host}:{port}"

    def feed() -> None:
        for _ in range(300):
            try:
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        counts = load_demo_cohort(base_url, settings, patients, days)
        clinician = issue_dev_token(settings, Role.CLINICIAN)
        typer.echo(
            "\n".join([
                "",
                "Demo cohort loaded (synthetic patients; not real data): "
                f"{counts['enrolled']} enrolled ({counts['already_enrolled']} already), "
                f"{counts['resources']} FHIR resources ingested, {counts['refused']} refused "
                "(device artefacts the validation caught).",
                f"  Web worklist:   {base_url}/",
                f"  API docs:       {base_url}/docs",
                f"  Worklist (API): curl -H 'Authorization: Bearer $TOKEN' "
                f"{base_url}/api/v1/worklist",
                "  A token for another role: .venv/bin/triage token --role clinician|ml-engineer|"
                "compliance|integration|admin",
                f"  A clinician token, valid 8 hours:\n{clinician}",
                "",
            ]))

    threading.Thread(target=feed, name="demo-loader", daemon=True).start()
    server.run()


def _mount_job_commands() -> None:
    # Training and monitoring commands join the top level (triage train, evaluate, promote, drift).
    for module, attr in (("training.cli", "app"), ("monitoring.cli", "app"),
                         ("service.security.cli", "app")):
        try:
            sub = getattr(__import__(module, fromlist=[attr]), attr)
        except ImportError:
            continue
        app.add_typer(sub)


def main() -> None:
    _mount_job_commands()
    app()
