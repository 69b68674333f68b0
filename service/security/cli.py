"""`triage audit verify`: check the audit log's hash chain (exit status 1 when it is broken)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)
audit = typer.Typer(help="The audit log (Normen): verify its hash chain.", no_args_is_help=True)
app.add_typer(audit, name="audit")


@audit.command()
def verify(database_url: Annotated[str | None, typer.Option(
               help="SQLAlchemy URL; default: TRIAGE_DATABASE_URL or the SQLite default")] = None,
           expected_head: Annotated[str | None, typer.Option(
               help="A head hash recorded earlier: detects deletion of the newest rows")] = None,
           ) -> None:
    """Verify that no audit row was edited or deleted."""
    from service.config import Settings
    from service.db.engine import make_engine, make_session_factory
    from service.security.audit import verify_chain

    url = database_url or Settings().resolved_database_url
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            result = verify_chain(session, expected_head)
    finally:
        engine.dispose()
    typer.echo(result.describe())
    if not result.ok:
        raise typer.Exit(1)
