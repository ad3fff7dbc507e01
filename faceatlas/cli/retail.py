"""`faceatlas retail ...`: run a real store on its cameras."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from faceatlas.cli.errors import Output, WholeTable, json_text, one_line, print_camera_failures
from faceatlas.cli.options import database_option

if TYPE_CHECKING:
    from faceatlas.apps.retail import StoreRunReport

app = typer.Typer(help="The Store of the Future on real cameras.", no_args_is_help=True)
console = Output()
err = Console(stderr=True, emoji=False)  # camera names are the user's: printed as written


@app.command("run")
def run(
    config: Annotated[Path, typer.Argument(help="the store's YAML/JSON: cameras (with sources), products")],
    database: Annotated[str | None, typer.Option("--db", "--database", callback=database_option,
                                                 help="database URL (default: FACEATLAS_DATABASE_URL)")] = None,
    index_dir: Annotated[Path | None, typer.Option(help="gallery index folder")] = None,
    pack: Annotated[str | None, typer.Option("--pack", "-p", help="model pack (default: FACEATLAS_PACK)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the run's summary as JSON")] = False,
) -> None:
    """Run the store's cameras until their files end or Ctrl-C: door crossings open and close
    visits, members are recognised, zone dwell is recorded, the checkout camera and the exit run
    face pay with liveness, and alerts go to the store's sinks.

    Exit 1 when a sink (webhook, MQTT) could not deliver some events (the summary says how many),
    or when some cameras failed (each named, with why, after the summary of the others; 2 when
    every camera failed); 130 when Ctrl-C (or SIGTERM) stopped a file's camera before the file's end."""
    from faceatlas.apps.retail import StoreConfig, run_store

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C: events are flushed
    report = run_store(StoreConfig.load(config), url=database, index_dir=index_dir, pack=pack,
                       config_file=config)
    outcomes: dict[str, int] = {}
    for outcome in report.outcomes:
        outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
    summary = {"entries": report.entries, "inferred_entries": report.inferred_entries, "exits": report.exits,
               "zone_tracks": report.zone_tracks, "charged": report.charged, "outcomes": outcomes,
               "alerts": report.alerts, "errors": report.errors, "events": report.events,
               "undelivered": report.undelivered, "interrupted": report.interrupted,
               "cameras": [c.to_dict() for c in report.cameras],
               "failed": {camera: {"error": error.code, "message": one_line(str(error))}
                          for camera, error in report.failed.items()}}
    if as_json:
        print(json_text(summary))
    else:
        _print_summary(summary, report)
    for sink, count in report.undelivered.items():
        err.print(f"{escape(sink)}: {count} events not delivered")
    for stats in report.cameras:
        if stats.interrupted:
            err.print(f"interrupted: camera {escape(stats.camera)} stopped after {stats.frames} frames, "
                      "before its file's end")
    print_camera_failures(report.failed, err)
    if report.exit_status:  # as `watch`: 130 stopped, 1 cameras failed (2: all) or events not delivered
        raise typer.Exit(report.exit_status)


def _print_summary(summary: dict[str, Any], report: StoreRunReport) -> None:
    table = WholeTable(title="Store run")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key != "cameras":
            table.add_row(key, escape(json.dumps(value) if isinstance(value, (dict, list)) else str(value)))
    console.print(table)
    for camera in report.cameras:
        console.print(f"camera {escape(camera.camera)}: {camera.frames} frames, {camera.fps:.1f} fps, "
                      f"lines {escape(str(camera.line_counts or '-'))}, reconnects {camera.source.reconnects}")
