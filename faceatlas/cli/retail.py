"""`faceatlas retail ...`: run a real store on its cameras."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from faceatlas.cli.errors import json_text

app = typer.Typer(help="The Store of the Future on real cameras.", no_args_is_help=True)
console = Console()


@app.command("run")
def run(
    config: Annotated[Path, typer.Argument(help="the store's YAML/JSON: cameras (with sources), products")],
    database: Annotated[str | None, typer.Option("--db", "--database",
                                                 help="database URL (default: FACEATLAS_DATABASE_URL)")] = None,
    index_dir: Annotated[Path | None, typer.Option(help="gallery index folder")] = None,
    pack: Annotated[str | None, typer.Option("--pack", "-p", help="model pack (default: FACEATLAS_PACK)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the run's summary as JSON")] = False,
) -> None:
    """Run the store's cameras until their files end or Ctrl-C: door crossings open and close
    visits, members are recognised, zone dwell is recorded, the checkout camera and the exit run
    face pay with liveness, and alerts go to the store's sinks."""
    from faceatlas.apps.retail import StoreConfig, run_store

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C: events are flushed
    report = run_store(StoreConfig.load(config), url=database, index_dir=index_dir, pack=pack)
    outcomes: dict[str, int] = {}
    for outcome in report.outcomes:
        outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
    summary = {"entries": report.entries, "inferred_entries": report.inferred_entries, "exits": report.exits,
               "zone_tracks": report.zone_tracks, "charged": report.charged, "outcomes": outcomes,
               "alerts": report.alerts, "errors": report.errors, "events": report.events,
               "cameras": [c.to_dict() for c in report.cameras]}
    if as_json:
        print(json_text(summary))
        return
    table = Table(title="Store run")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key != "cameras":
            table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)
    for camera in report.cameras:
        console.print(f"camera {camera.camera}: {camera.frames} frames, {camera.fps:.1f} fps, "
                      f"lines {camera.line_counts or '-'}, reconnects {camera.source.reconnects}")
