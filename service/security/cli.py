"""`triage audit verify|checkpoint|retention`: check the audit log's hash chain against its signed
checkpoints (exit status 1 when it is broken), sign a new checkpoint, apply retention."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)
audit = typer.Typer(
    help="The audit log (Normen): verify its hash chain, sign checkpoints.", no_args_is_help=True
)
app.add_typer(audit, name="audit")


@audit.command()
def verify(
    database_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL; default: TRIAGE_DATABASE_URL or the SQLite default"),
    ] = None,
    expected_head: Annotated[
        str | None,
        typer.Option(help="A head hash recorded earlier: detects deletion of the newest rows"),
    ] = None,
) -> None:
    """Verify that no audit row was edited or deleted, against the newest signed checkpoint."""
    from service.config import Settings
    from service.db.engine import make_engine, make_session_factory
    from service.security.checkpoints import verify_with_checkpoints

    settings = Settings()
    engine = make_engine(database_url or settings.resolved_database_url)
    try:
        with make_session_factory(engine)() as session:
            result = verify_with_checkpoints(session, settings, expected_head)
    finally:
        engine.dispose()
    typer.echo(result.describe())
    if not result.ok:
        raise typer.Exit(1)


@audit.command()
def checkpoint(
    database_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL; default: TRIAGE_DATABASE_URL or the SQLite default"),
    ] = None,
) -> None:
    """Sign the audit chain's head and append it to the checkpoint file (exit 1: not signed)."""
    from service.config import Settings
    from service.db.engine import make_engine, make_session_factory
    from service.security.checkpoints import CheckpointError, checkpoint_path, write_checkpoint

    settings = Settings()
    engine = make_engine(database_url or settings.resolved_database_url)
    try:
        with make_session_factory(engine)() as session:
            signed = write_checkpoint(session, settings)
    except CheckpointError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    typer.echo(
        f"audit checkpoint: seq {signed.seq}, head {signed.head}, key {signed.key_id}, "
        f"appended to {checkpoint_path(settings)}"
    )


@audit.command()
def retention(
    policy: Annotated[
        str,
        typer.Option(
            help="JSON file: {category: days or null}; categories outbox_delivered, "
            "assessments, received_resources, readings, worklist_events, audit_log"
        ),
    ],
    apply: Annotated[
        bool, typer.Option(help="Delete what may be deleted (default: only report)")
    ] = False,
    drop_partitions: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL: drop the whole months of readings and assessments past their "
            "period. The value is the reason on record: the controller's decision, after the "
            "export to the archive"
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL; default: TRIAGE_DATABASE_URL or the SQLite default"),
    ] = None,
) -> None:
    """Report (and with --apply, carry out) the retention policy."""
    from pathlib import Path

    from service.config import Settings
    from service.db.engine import make_engine, make_session_factory, transaction
    from service.security.record_guards import record_maintenance
    from service.security.retention import (
        RetentionPolicy,
        drop_expired_partitions,
        run_retention,
    )

    try:
        parsed = RetentionPolicy.from_file(Path(policy))
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    engine = make_engine(database_url or Settings().resolved_database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            lines = run_retention(session, parsed, apply=apply)
            dropped: list[str] = []
            if drop_partitions:
                with record_maintenance(drop_partitions):
                    dropped = drop_expired_partitions(session, parsed)
    finally:
        engine.dispose()
    for line in lines:
        keep = "keep" if line.keep_days is None else f"{line.keep_days} d"
        typer.echo(
            f"{line.category:<20} {keep:>8}  due {line.due:>7}  deleted {line.deleted:>7}"
            f"  {line.note}"
        )
    for name in dropped:
        typer.echo(f"dropped partition {name}")
