"""Command line for drift reports: ``register(triage_app)`` adds ``triage drift`` and
``triage drift-summary`` to the service CLI.

The work is done by :func:`write_report`, which the service can call too; the Typer commands only
parse options. Monitoring imports models/ only, so a demo window from training's simulator is
plugged in by the composition root (``make_app(demo_source=...)``), not imported here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from models.artifact import SHIPPED_ARTIFACT_DIR, Manifest
from monitoring.config import DriftConfig
from monitoring.data import MonitoringFrame, load_reference, read_frame

# (scenario, seed) -> (reference, current); scenarios: unchanged, population, device-spo2,
# device-weight. Supplied by the service CLI from training's simulator.
DemoSource = Callable[[str, int], tuple[MonitoringFrame, MonitoringFrame]]
LIBRARY_FILE = "evidently.js"


def _day_floor(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s // 86_400 * 86_400, UTC)


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def write_report(
    reference: MonitoringFrame,
    current: MonitoringFrame,
    config: DriftConfig,
    out_dir: Path,
    *,
    window_start: datetime,
    window_end: datetime,
    model_version: str,
    pathway: str | None,
    organisation: str | None,
    reference_window: tuple[datetime, datetime] | None = None,
) -> tuple[Path, Path | None, dict[str, object]]:
    """Run a report and write ``<key>.json`` (+ ``<key>.html``) into ``out_dir``; idempotent.

    With ``reference_window`` the reference is a local baseline: its rows in that period.
    """
    from monitoring.drift import evidently_library_path, run_drift_report

    if config.render_html and not config.html_standalone:
        # A report folder is opened from disk: load Evidently's bundle from beside the file.
        config = config.model_copy(update={"html_library_url": LIBRARY_FILE})
    if reference_window is not None:
        lo, hi = (int(t.timestamp()) for t in reference_window)
        rows = (reference.scored_at >= lo) & (reference.scored_at < hi)
        if pathway is not None:
            rows &= reference.pathway == pathway
        if organisation is not None:
            rows &= reference.organisation == organisation
        reference = reference.take(rows)
    result = run_drift_report(
        reference,
        current,
        config,
        window_start=window_start,
        window_end=window_end,
        model_version=model_version,
        pathway=pathway,
        organisation=organisation,
        reference_kind="training-sample" if reference_window is None else "local-baseline",
        reference_window=reference_window,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{result.report_key}.json"
    json_path.write_text(
        json.dumps(result.json, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    html_path = None
    if result.html:
        html_path = out_dir / f"{result.report_key}.html"
        html_path.write_text(result.html, encoding="utf-8")
        library = out_dir / LIBRARY_FILE
        if not config.html_standalone and not library.exists():
            shutil.copyfile(evidently_library_path(), library)
    return json_path, html_path, result.json


def register(app: typer.Typer, demo_source: DemoSource | None = None) -> typer.Typer:
    """Add the ``drift`` and ``drift-summary`` commands to ``app`` (the service's ``triage``).

    ``demo_source`` enables ``--demo`` windows from training's simulator.
    """

    @app.command("drift")
    def drift(
        window_start: Annotated[
            str | None,
            typer.Option(
                help="ISO date/time, UTC unless an offset (clinical time); --demo: "
                "the demo's window when left out."
            ),
        ] = None,
        window_end: Annotated[str | None, typer.Option(help="ISO date/time (exclusive).")] = None,
        pathway: Annotated[str | None, typer.Option(help="Pathway id; all when left out.")] = None,
        organisation: Annotated[str | None, typer.Option(help="Organisation number.")] = None,
        current: Annotated[
            Path | None,
            typer.Option(help="Scored rows exported by the service (.npz or .parquet)."),
        ] = None,
        demo: Annotated[
            str | None,
            typer.Option(
                help="Simulated window instead of --current: unchanged, population, device-spo2, "
                "device-weight (needs the service CLI's simulator)."
            ),
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of the demo window.")] = 0,
        artifact: Annotated[
            Path, typer.Option(help="Model artifact folder with reference.npz.")
        ] = SHIPPED_ARTIFACT_DIR,
        reference: Annotated[
            Path | None,
            typer.Option(help="Reference file instead of the artifact's reference.npz."),
        ] = None,
        reference_start: Annotated[
            str | None,
            typer.Option(help="Local baseline: start of the reference period (its rows only)."),
        ] = None,
        reference_end: Annotated[
            str | None, typer.Option(help="Local baseline: end of the reference period.")
        ] = None,
        model_version: Annotated[
            str | None,
            typer.Option(help="Model version; read from the artifact manifest when left out."),
        ] = None,
        config: Annotated[
            Path | None,
            typer.Option(
                help="Drift settings (.json/.toml); else TRIAGE_DRIFT_CONFIG or defaults."
            ),
        ] = None,
        out: Annotated[Path, typer.Option(help="Output folder.")] = Path("var/drift-reports"),
        fail_on: Annotated[
            str | None,
            typer.Option(
                help="Exit with code 3 when the verdict is at least this (warning or drift)."
            ),
        ] = None,
    ) -> None:
        """Compare a window of scored rows with the model's reference; write JSON and HTML."""
        settings = DriftConfig.from_file(config) if config else DriftConfig.from_env()
        if (current is None) == (demo is None):
            raise typer.BadParameter("give exactly one of --current or --demo")
        if (reference_start is None) != (reference_end is None):
            raise typer.BadParameter("give both --reference-start and --reference-end, or neither")
        ref_window = (
            None
            if reference_start is None or reference_end is None
            else (_parse_time(reference_start), _parse_time(reference_end))
        )
        if demo is not None:
            if demo_source is None:
                raise typer.BadParameter(
                    "--demo needs the simulator; run it as `triage drift file` from the service CLI"
                )
            try:
                ref_frame, cur_frame = demo_source(demo, seed)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from exc
            # The demo compares its window with the same cohort's own baseline period.
            if ref_window is None and len(ref_frame):
                ref_window = (
                    _day_floor(int(ref_frame.scored_at.min())),
                    _day_floor(int(ref_frame.scored_at.max()) + 86_400),
                )
            if window_start is None and len(cur_frame):
                window_start = _day_floor(int(cur_frame.scored_at.min())).isoformat()
            if window_end is None and len(cur_frame):
                window_end = _day_floor(int(cur_frame.scored_at.max()) + 86_400).isoformat()
        else:
            assert current is not None
            cur_frame = read_frame(current)
            ref_frame = read_frame(reference) if reference else load_reference(artifact)
        if window_start is None or window_end is None:
            raise typer.BadParameter("give --window-start and --window-end")
        version = model_version or (Manifest.read(artifact).version if demo is None else "demo")
        from monitoring.verdict import InsufficientDataError

        try:
            json_path, html_path, payload = write_report(
                ref_frame,
                cur_frame,
                settings,
                out,
                window_start=_parse_time(window_start),
                window_end=_parse_time(window_end),
                model_version=version,
                pathway=pathway,
                organisation=organisation,
                reference_window=ref_window,
            )
        except InsufficientDataError as exc:
            typer.echo(f"no report: {exc}", err=True)
            raise typer.Exit(2) from exc
        summary: Any = payload.get("summary") or {}
        typer.echo(f"verdict: {payload['verdict']}")
        if summary:
            typer.echo(str(summary["en"]["headline"]))
        typer.echo(f"drifted features: {', '.join(payload['drifted_features']) or 'none'}")  # type: ignore[arg-type]
        for flag in payload["data_quality"]:  # type: ignore[attr-defined]
            typer.echo(f"data quality: {flag['text_en']}")
        typer.echo(f"json: {json_path}")
        if html_path:
            typer.echo(f"html: {html_path}")
        levels = {"ok": 0, "warning": 1, "drift": 2}
        if fail_on and levels[str(payload["verdict"])] >= levels[fail_on]:
            raise typer.Exit(code=3)

    @app.command("drift-summary")
    def summary(
        month: Annotated[str, typer.Option(help="YYYY-MM")],
        reports: Annotated[Path, typer.Option(help="JSON list of report index rows.")],
        signoffs: Annotated[Path, typer.Option(help="JSON list of sign-offs.")],
        out: Annotated[Path, typer.Option(help="Folder.")] = Path("governance/monitoring"),
    ) -> None:
        """Write the monthly Markdown summary of reports and sign-offs for governance."""
        from monitoring.summary import write_monthly_summary

        path = write_monthly_summary(
            json.loads(reports.read_text(encoding="utf-8")),
            json.loads(signoffs.read_text(encoding="utf-8")),
            month,
            out,
        )
        typer.echo(str(path))

    return app


def make_app(demo_source: DemoSource | None = None) -> typer.Typer:
    """A stand-alone Typer app with the monitoring commands."""
    return register(
        typer.Typer(help="Drift and performance reports with Evidently.", no_args_is_help=True),
        demo_source,
    )


app = make_app()
