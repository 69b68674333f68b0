"""`triage`: the one composition root. Serves the app, runs the demo, issues dev tokens, and mounts
the training and monitoring commands (train, evaluate, promote, drift …)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from models.identifiers import contains_person_number
from service.config import Settings

app = typer.Typer(
    help="Triage and decision support for digital home follow-up.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
log = logging.getLogger("triage.cli")

DEMO_SEED = 20261125
DEMO_UNITS = {
    "copd": "lungepoliklinikk",
    "heart-failure": "hjertepoliklinikk",
    "post-operative": "kirurgisk-poliklinikk",
    "oncology": "kreftpoliklinikk",
    "paediatric": "barnepoliklinikk",
}


def _champion_resolver(uri: str, name: str, dest: Path, override_reason: str | None = None) -> Path:
    # Imported on use only: mlflow is needed just when a registry is configured.
    from training.registry import resolve_champion

    return resolve_champion(uri, name, dest, override_reason)


def build_app(settings: Settings | None = None) -> Any:
    """The production app: create_app plus the registry resolver and background jobs."""
    from service.app import create_app
    from service.jobs import default_background_jobs

    settings = settings or Settings()
    return create_app(
        settings,
        champion_resolver=_champion_resolver,
        background_jobs=default_background_jobs(settings),
    )


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
def rescore() -> None:
    """Re-score every patient once, as of now: the CronJob form of the in-process schedule."""
    import asyncio

    from service.app import create_app
    from service.jobs import rescore_all

    settings = Settings()
    _migrate(settings)
    application = create_app(settings, champion_resolver=_champion_resolver)

    async def run() -> int:
        async with application.router.lifespan_context(application):
            return await asyncio.to_thread(rescore_all, application)

    count = asyncio.run(run())
    typer.echo(f"re-scored {count} patients (0: another replica holds the re-scoring lock)")


@app.command()
def questionnaires() -> None:
    """Send due questionnaires as Tasks and mark missed ones, once: the CronJob form of the
    in-process schedule (with TRIAGE_IN_PROCESS_JOBS=false nothing else sends them)."""
    import asyncio

    from service.app import create_app
    from service.jobs import dispatch_questionnaires

    settings = Settings()
    _migrate(settings)
    application = create_app(settings, champion_resolver=_champion_resolver)

    async def run() -> None:
        async with application.router.lifespan_context(application):
            await asyncio.to_thread(dispatch_questionnaires, application)

    asyncio.run(run())
    typer.echo("questionnaires dispatched (nothing, if another replica held this period's run)")


@app.command("export-triton")
def export_triton_command(
    out: Annotated[Path, typer.Argument(help="Folder for the Triton model repository")],
    artifact: Annotated[
        Path | None, typer.Option(help="Model artifact folder (default: TRIAGE_MODEL_DIR)")
    ] = None,
    triton_version: Annotated[int, typer.Option(help="Triton's integer model version")] = 1,
    storage_uri: Annotated[
        str, typer.Option(help="Where KServe finds the repository")
    ] = "pvc://triage-models/triton",
) -> None:
    """Write a Triton model repository (model.onnx + config.pbtxt from the graph) and a KServe
    InferenceService that serves it over the same V2 protocol as our /v2."""
    from service.triton_export import export_triton

    folder = export_triton(
        artifact or Settings().model_dir,
        out,
        triton_version=triton_version,
        storage_uri=storage_uri,
    )
    typer.echo(
        f"wrote {folder}/config.pbtxt, {folder}/{triton_version}/model.onnx and "
        f"{out}/inference-service.yaml"
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (one ONNX thread each)")] = 1,
) -> None:
    """Serve the API (applies pending migrations first)."""
    import uvicorn

    from service.observability import configure_logging

    settings = Settings()
    # Before anything logs: the server's own lines (and its tracebacks) go through the same
    # redacting handler as ours; each worker's lifespan configures it again the same way.
    configure_logging(settings.log_json)
    _migrate(settings)
    if workers > 1:
        uvicorn.run(
            "service.cli:build_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
        )
    else:
        uvicorn.run(build_app(settings), host=host, port=port, log_config=None)


@app.command()
def token(
    role: Annotated[
        str, typer.Option(help="clinician | ml-engineer | compliance | integration | admin")
    ],
    org: Annotated[str | None, typer.Option(help="Organisation number")] = None,
    unit: Annotated[list[str] | None, typer.Option(help="Unit (repeat); none: every unit")] = None,
    subject: Annotated[str | None, typer.Option(help="HPR number / client id")] = None,
) -> None:
    """Development mode only: print a bearer token for a role."""
    from service.security.principal import Role
    from service.security.tokens import DEV_ORGANISATION, issue_dev_token

    settings = Settings()
    try:
        typer.echo(
            issue_dev_token(
                settings, Role(role), org or DEV_ORGANISATION, list(unit) if unit else None, subject
            )
        )
    except (RuntimeError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def load_demo_cohort(
    base_url: str, settings: Settings, n_patients: int = 40, days: int = 21, seed: int = DEMO_SEED
) -> dict[str, int]:
    """Feed a synthetic cohort through the real HTTP API: enrol, then FHIR batch Bundles.

    Re-running is harmless: enrolment answers 200 (or 409) for known patients and every message is
    idempotent by its identifier (ids carry the cohort's start date).
    """
    import httpx

    from service.security.principal import Role
    from service.security.tokens import DEV_ORGANISATION, issue_dev_token
    from training.simulator import cohort_to_fhir, fhir_bundles, simulate_cohort

    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=days
    )
    cohort = simulate_cohort(n_patients, days, seed, start=start)
    integration = issue_dev_token(settings, Role.INTEGRATION, DEV_ORGANISATION)
    headers = {"Authorization": f"Bearer {integration}"}
    counts = {"enrolled": 0, "already_enrolled": 0, "resources": 0, "refused": 0}
    tag = start.strftime("%Y%m%d")
    now_s = time.time()
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
        for p in cohort.patients:
            body = {
                "identifier": p.identifier,
                "birth_date": p.birth_date.isoformat(),
                "sex": p.sex,
                "pathway": p.pathway,
                "organisation": DEV_ORGANISATION,
                "unit": DEMO_UNITS.get(p.pathway, "hjemmeoppfolging"),
            }
            r = http.post("/api/v1/patients", json=body)
            if r.status_code == 201:
                counts["enrolled"] += 1
            elif r.status_code in (200, 409):  # 200: the same enrolment already stored
                counts["already_enrolled"] += 1
            else:
                raise RuntimeError(f"enrolment refused ({r.status_code}): {r.text[:200]}")

        def by_identifier(p: Any) -> dict[str, Any]:
            return {
                "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": p.identifier}
            }

        def retagged(resources: Any) -> Any:
            for resource in resources:
                for ident in (
                    [resource.get("identifier")]
                    if isinstance(resource.get("identifier"), dict)
                    else resource.get("identifier", [])
                ):
                    ident["value"] = f"{tag}-{ident['value']}"
                when = resource.get("effectiveDateTime") or resource.get("authored")
                if when and datetime.fromisoformat(when).timestamp() > now_s:
                    continue  # the simulated day is not over yet: tomorrow's readings wait
                yield resource

        for bundle in fhir_bundles(retagged(cohort_to_fhir(cohort, by_identifier)), 200):
            r = http.post(
                "/fhir",
                content=json.dumps(bundle),
                headers={"Content-Type": "application/fhir+json"},
            )
            r.raise_for_status()
            for entry in r.json()["entry"]:
                ok = entry["response"]["status"].startswith(("200", "201"))
                counts["resources" if ok else "refused"] += 1
    return counts


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    patients: Annotated[int, typer.Option(help="Synthetic patients to enrol")] = 40,
    days: Annotated[int, typer.Option(help="Days of history per patient")] = 21,
) -> None:
    """Migrate, serve, and feed a synthetic demo cohort through the ingestion API."""
    import httpx
    import uvicorn

    from service.security.principal import Role
    from service.security.tokens import issue_dev_token

    settings = Settings()
    _migrate(settings)
    application = build_app(settings)
    server = uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_config=None))
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
        # Development tokens for every role, valid 8 hours, also kept in var/ for copy-paste.
        tokens = {role.value: issue_dev_token(settings, role) for role in Role}
        token_file = settings.var_dir / "dev-tokens.txt"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(f"{r}\t{t}\n" for r, t in tokens.items()))
        typer.echo(
            "\n".join(
                [
                    "",
                    "Demo cohort loaded (synthetic patients; not real data): "
                    f"{counts['enrolled']} enrolled ({counts['already_enrolled']} already), "
                    f"{counts['resources']} FHIR resources ingested, {counts['refused']} refused "
                    "(device artefacts the validation caught).",
                    f"  Web worklist:   {base_url}/",
                    f"  API docs:       {base_url}/docs",
                    f"  Worklist (API): curl -H 'Authorization: Bearer $TOKEN' "
                    f"{base_url}/api/v1/worklist",
                    "  Tokens (development issuer, valid 8 hours; also in "
                    f"{token_file}; new ones: .venv/bin/triage token --role <role>):",
                    *(f"    {role:<12} {token}" for role, token in tokens.items()),
                    "",
                ]
            )
        )
        if settings.drift_schedule_hours > 0:
            _first_drift_run(application, base_url)

    threading.Thread(target=feed, name="demo-loader", daemon=True).start()
    server.run()


# ---- triage storage: PostgreSQL partitions -------------------------------------------------

storage_app = typer.Typer(help="The store's monthly partitions (PostgreSQL).", no_args_is_help=True)
app.add_typer(storage_app, name="storage")


@storage_app.command("partitions")
def storage_partitions(
    months_ahead: Annotated[
        int, typer.Option(help="Create this month's and this many coming months' partitions")
    ] = 3,
) -> None:
    """Create the coming months' partitions of readings, assessments and audit_log ahead of time
    (the in-process schedule does it daily; a CronJob can run this instead)."""
    from service.db.engine import make_engine
    from service.db.partitions import ensure_partitions

    engine = make_engine(Settings().resolved_database_url)
    try:
        with engine.begin() as conn:
            created = ensure_partitions(conn, months_ahead=months_ahead)
    finally:
        engine.dispose()
    typer.echo(f"created {len(created)} partitions" + "".join(f"\n  {n}" for n in created))


# ---- triage drift: reports against the service's own store -----------------------------------

drift_app = typer.Typer(
    help="Drift reports on the assessments in the service's database: run, "
    "list, sign off, export the monthly governance summary.",
    no_args_is_help=True,
)
app.add_typer(drift_app, name="drift")


def _monitoring_service(settings: Settings) -> Any:
    """The service's MonitoringService without HTTP: the model from Settings, a fresh engine."""
    from monitoring.config import DriftConfig
    from service.db.engine import make_engine, make_session_factory
    from service.domain.monitoring import MonitoringService
    from service.model_registry import ModelRegistry
    from service.observability import Metrics

    models = ModelRegistry(settings, _champion_resolver)
    models.load()
    engine = make_engine(settings.resolved_database_url)
    service = MonitoringService(settings, Metrics(), models, DriftConfig.from_env())
    return service, engine, make_session_factory(engine)


def _when(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC).replace(microsecond=0)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@drift_app.command("run")
def drift_run(
    days: Annotated[int, typer.Option(min=1, max=366, help="Window length in days")] = 7,
    pathway: Annotated[str | None, typer.Option(help="Pathway id; all when left out")] = None,
    organisation: Annotated[str | None, typer.Option(help="Organisation number")] = None,
    end: Annotated[
        str | None, typer.Option(help="Window end (ISO, UTC unless an offset); default now")
    ] = None,
    by: Annotated[str, typer.Option(help="Who runs it (HPR number / user id)")] = "cli",
    start: Annotated[
        str | None, typer.Option(help="Window start (ISO); default END minus DAYS")
    ] = None,
    reference_start: Annotated[
        str | None,
        typer.Option(help="Local baseline start (ISO): compare with this period of the same scope"),
    ] = None,
    reference_end: Annotated[
        str | None, typer.Option(help="Local baseline end (ISO, exclusive)")
    ] = None,
) -> None:
    """Run a drift report on the service's database (clinical time); prints verdict and id.

    Without --reference-start/--reference-end the reference is the model's training sample.
    """
    from service.domain.monitoring import InsufficientWindow

    settings = Settings()
    _migrate(settings)
    service, engine, sessions = _monitoring_service(settings)
    from service.errors import TriageError

    window_end = _when(end)
    window_start = _when(start) if start else window_end - timedelta(days=days)
    if (reference_start is None) != (reference_end is None):
        typer.echo("error: give both --reference-start and --reference-end, or neither", err=True)
        raise typer.Exit(2)
    try:
        outcome = service.run_report(
            sessions,
            window_start,
            window_end,
            pathway,
            organisation,
            created_by=f"cli:{by}",
            reference_start=_when(reference_start) if reference_start else None,
            reference_end=_when(reference_end) if reference_end else None,
            role="cli",
        )
    except InsufficientWindow as exc:
        typer.echo(f"no report: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    except TriageError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    finally:
        service.close()
        engine.dispose()
    report = outcome.report
    typer.echo(f"verdict: {report['verdict']}")
    if report.get("summary_en"):
        typer.echo(report["summary_en"])
    typer.echo(f"report id: {report['id']}{'' if outcome.created else ' (already stored)'}")
    typer.echo(f"drifted features: {', '.join(report['drifted_features']) or 'none'}")
    for flag in report["data_quality"]:
        typer.echo(f"data quality: {flag['text_en']}")


@drift_app.command("list")
def drift_list(
    pathway: Annotated[str | None, typer.Option(help="Pathway id")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """Reports, newest first: id, window, scope, verdict and sign-off state."""
    settings = Settings()
    _migrate(settings)
    service, engine, sessions = _monitoring_service(settings)
    try:
        with sessions() as session:
            rows = service.list_reports(session, pathway=pathway, limit=limit)
    finally:
        engine.dispose()
    for r in rows:
        signed = r["sign_off"]["decision"] if r["sign_off"] else "awaiting review"
        window = f"{r['window_start']:%Y-%m-%d %H:%M} – {r['window_end']:%Y-%m-%d %H:%M}"
        typer.echo(
            f"{r['id']}  {window}  {r['pathway'] or 'all'}/{r['organisation'] or 'all'}"
            f"  {r['verdict'].upper()}  {signed}"
        )
    if not rows:
        typer.echo("no drift reports")


@drift_app.command("sign-off")
def drift_sign_off(
    report_id: Annotated[str, typer.Argument(help="Report id (from list)")],
    decision: Annotated[str, typer.Option(help="accepted | action-required | escalated")],
    comment: Annotated[str, typer.Option(help="Why; never a patient's identity")],
    by: Annotated[str, typer.Option(help="The compliance officer's HPR number")],
    org: Annotated[str | None, typer.Option(help="Organisation number")] = None,
) -> None:
    """Development only: sign a report off as compliance officer BY (audited like the API)."""
    from service.domain.monitoring import SIGN_OFF_DECISIONS
    from service.errors import TriageError
    from service.security.audit import AuditEvent, append_events
    from service.security.principal import Role

    settings = Settings()
    if settings.environment == "production":
        typer.echo(
            "error: in production sign off through the API or the web page (a verified "
            "HelseID token names the signer)",
            err=True,
        )
        raise typer.Exit(2)
    signer = by.strip()
    if decision not in SIGN_OFF_DECISIONS or not signer or contains_person_number(signer):
        typer.echo(
            f"error: --decision must be one of {', '.join(SIGN_OFF_DECISIONS)} and --by "
            "an HPR number (never a fødselsnummer)",
            err=True,
        )
        raise typer.Exit(2)
    _migrate(settings)
    service, engine, sessions = _monitoring_service(settings)
    from service.db.engine import transaction

    status, error = 201, None
    try:
        with transaction(sessions) as session:
            signoff = service.sign_off(
                session, report_id, decision, comment, signed_by=signer, role=Role.COMPLIANCE.value
            )
    except TriageError as exc:
        status, error = exc.status_code, exc.message
    append_events(
        engine,
        [
            AuditEvent(
                datetime.now(UTC),
                signer[:64],
                Role.COMPLIANCE.value,
                org,
                None,
                "write",
                f"CLI triage drift sign-off {report_id}"[:200],
                "audit-control",
                status,
            )
        ],
    )
    engine.dispose()
    if error is not None:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"signed off: {signoff['decision']} by {signoff['signed_by']} at "
        f"{signoff['signed_at']:%Y-%m-%dT%H:%M:%SZ} (sign-off {signoff['id']})"
    )


@drift_app.command("export-summary")
def drift_export_summary(
    month: Annotated[str, typer.Option(help="YYYY-MM")],
    out: Annotated[Path, typer.Option(help="Folder")] = Path("governance/monitoring"),
) -> None:
    """Write the month's reports and sign-offs as Markdown for governance/monitoring/."""
    from service.errors import TriageError

    settings = Settings()
    _migrate(settings)
    service, engine, sessions = _monitoring_service(settings)
    try:
        with sessions() as session:
            path = service.export_summary(session, month, out)
    except TriageError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    finally:
        service.close()
        engine.dispose()
    typer.echo(str(path))


@app.command()
def recalibrate(
    organisation: Annotated[
        str, typer.Option(help="Organisation number (9 digits) whose recorded outcomes to use")
    ],
    method: Annotated[
        str, typer.Option(help="intercept (shift the logit) or platt (scale and shift)")
    ] = "platt",
    min_events: Annotated[
        int, typer.Option(min=1, help="Fewest events a pathway needs to be recalibrated")
    ] = 10,
    register: Annotated[
        bool, typer.Option(help="Register the new version (alias 'challenger') in MLflow")
    ] = True,
    name: Annotated[str, typer.Option(help="Registered model name")] = (
        "home-followup-deterioration"
    ),
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the new artifact")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fit/check split of patients")] = 0,
) -> None:
    """Fit a per-pathway recalibration on the outcomes recorded through POST /api/v1/outcomes
    (assessments labelled: deterioration within 72 h), choose the operating points again, and
    write a new model version; registered as 'challenger', it goes through `triage promote`."""
    import re as _re

    import numpy as np

    from service.db.engine import make_engine, make_session_factory
    from service.domain.outcomes import labelled_assessments
    from service.model_registry import ModelRegistry
    from training.recalibrate import SiteRows, recalibrate_artifact, register_recalibrated
    from training.tracking import var_dir

    if not _re.fullmatch(r"\d{9}", organisation):
        raise typer.BadParameter("an organisation number has 9 digits", param_hint="organisation")
    if method not in ("intercept", "platt"):
        raise typer.BadParameter("intercept or platt", param_hint="method")
    settings = Settings()
    models = ModelRegistry(settings, _champion_resolver)
    source = models.load().model.folder
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_session_factory(engine)() as session:
            labelled = labelled_assessments(session, organisation)
    finally:
        engine.dispose()
    if len(labelled) == 0 or labelled.y.sum() == 0:
        typer.echo(
            f"organisation {organisation}: no assessment has a known outcome with a "
            "deterioration yet; record outcomes first (POST /api/v1/outcomes)",
            err=True,
        )
        raise typer.Exit(2)
    rows = SiteRows(
        labelled.X,
        labelled.y,
        labelled.pathway,
        labelled.patient,
        labelled.time_s,
        labelled.time_to_event_h,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = out or var_dir() / "artifacts" / f"{name}-recal-{organisation}-{stamp}"
    result = recalibrate_artifact(
        source,
        dest,
        rows,
        organisation=organisation,
        method=method,  # type: ignore[arg-type]
        seed=seed,
        min_events=min_events,
    )
    c = result.check

    def r(x: float) -> str:
        return "–" if not np.isfinite(x) else f"{x:.3f}"

    typer.echo(
        f"recalibrated {result.source_version} -> {result.version} ({method}) on "
        f"{len(rows.y)} patient-days, {int(rows.y.sum())} with a deterioration within 72 h "
        f"(synthetic model; check on local data)"
    )
    for pw, m in sorted(result.maps.items()):
        typer.echo(
            f"  {pw}: scale {m['scale']:.2f}, shift {m['shift']:+.2f} "
            f"({m['events']} events in {m['rows']} rows)"
        )
    for note in result.notes:
        typer.echo(f"  {note}")
    typer.echo(
        f"check half ({c['rows']} rows, {c['events']} events): ECE {r(c['ece_before'])} -> "
        f"{r(c['ece_after'])}; artifact {result.artifact_dir}"
    )
    if register:
        run_id, version = register_recalibrated(result, name, tracking_uri)
        typer.echo(
            f"MLflow run {run_id}; registered {name} version {version} as 'challenger'; "
            "promote it through the gate with `triage promote`"
        )


def _first_drift_run(application: Any, base_url: str) -> None:
    """The demo's first scheduled drift run, as soon as its cohort is in (the schedule then
    finds it fresh and waits a full interval)."""
    from service.jobs import run_drift_schedule

    try:
        runs = run_drift_schedule(application)
    except Exception:  # the demo keeps serving; the schedule retries at its next interval
        log.exception("the demo's first drift report failed")
        return
    lines = [
        "Drift reports (schedule, last "
        f"{application.state.settings.drift_window_days} days; synthetic data):"
    ]
    for r in runs:
        scope = r.pathway or "all pathways"
        # "112 assessments scored by model … : at least 500 are needed …" -> "112 assessments"
        why = (r.skipped or "").split(" scored by", 1)[0]
        if r.skipped != "not due yet":
            why += "; too few for a drift verdict"
        lines.append(
            f"  {scope}: {r.verdict} (report {r.report_id})"
            if r.report_id
            else f"  {scope}: no verdict ({why})"
        )
    lines.append(
        f"  Review and sign off: {base_url}/api/v1/monitoring/drift-reports "
        "(compliance token), or `triage drift list` / `triage drift sign-off`"
    )
    typer.echo("\n".join(lines))


def _mount_job_commands() -> None:
    """Training commands join the top level (triage train, evaluate, promote), the audit chain
    check is `triage audit`, and monitoring's file-based report joins `triage drift` as
    `drift file` (the `drift` name is the group). Imported here, not at module level, so that
    `triage serve` never loads the training stack; a broken import fails loudly."""
    from monitoring.cli import register
    from service.security.cli import app as audit_app
    from training.cli import app as training_app

    app.add_typer(training_app)
    app.add_typer(audit_app)
    _mount_offline_drift(register(typer.Typer(), demo_source=_drift_demo_source), app, drift_app)


def _drift_demo_source(scenario: str, seed: int, n_patients: int = 200) -> Any:
    """(local baseline, window) for ``triage drift file --demo``: two weeks each of a simulated
    cohort in its steady state, the change (if any) starting between them; rows built as from
    the store (monitoring.window) and scored by the shipped model."""
    from models.artifact import SHIPPED_ARTIFACT_DIR
    from models.features import DAY_S
    from models.runtime import OnnxRiskModel
    from monitoring.window import frame_from_cohort
    from training.drift_scenarios import SCENARIOS, STEADY_FROM_DAY, simulate

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown demo {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    model = OnnxRiskModel(SHIPPED_ARTIFACT_DIR).load()
    change_day = STEADY_FROM_DAY + 14
    cohort = simulate(n_patients, seed, scenario, fault_from_day=change_day)
    s0 = cohort.start_s
    baseline = frame_from_cohort(
        cohort, model, s0 + STEADY_FROM_DAY * DAY_S, s0 + change_day * DAY_S
    )
    window = frame_from_cohort(
        cohort, model, s0 + change_day * DAY_S, s0 + (change_day + 14) * DAY_S
    )
    return baseline, window


def _mount_offline_drift(offline: typer.Typer, top: typer.Typer, drift: typer.Typer) -> None:
    """monitoring's `drift` (a report from exported files) as `drift file`; `drift-summary`
    (from JSON files) stays at the top level."""
    for command in offline.registered_commands:
        if command.name == "drift":
            command.name = "file"
            drift.registered_commands.append(command)
        else:
            top.registered_commands.append(command)


def main() -> None:
    _mount_job_commands()
    app()
