"""`faceatlas demo ...`: end-to-end demonstrations on real faces (the shared LFW photos)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from faceatlas.cli.errors import Output, WholeTable, fail
from faceatlas.cli.files import progress
from faceatlas.engine import FaceAnalyzer, FaceAtlasError, decoded_pixels
from faceatlas.errors import InvalidInput
from faceatlas.settings import EngineSettings

if TYPE_CHECKING:
    from faceatlas.apps.retail import ExitOutcome, Report

app = typer.Typer(help="Demonstrations of the vertical apps on real faces.", no_args_is_help=True)
console = Output()


def _settings() -> EngineSettings:
    """The engine settings, with the team's shared assets as defaults: ``FACEATLAS_SHARED``, else the
    ``shared`` folder beside the source checkout; its models are used when FACEATLAS_MODEL_DIR is unset."""
    settings = EngineSettings()
    shared = (settings.shared or Path(__file__).resolve().parents[2].parent / "shared").expanduser()
    update: dict[str, object] = {"shared": shared}
    if not settings.model_dir and (shared / "models").is_dir():
        update["model_dir"] = str(shared / "models")
    return settings.model_copy(update=update)


@app.command()
def retail(
    members: Annotated[int, typer.Option(help="members to enrol")] = 8,
    visits: Annotated[int, typer.Option(help="visits in the simulated day")] = 30,
    seed: Annotated[int, typer.Option(help="seed of the simulation")] = 0,
    out: Annotated[Path | None, typer.Option(help="output folder (default: a new temporary folder)")] = None,
    pack: Annotated[str | None, typer.Option("--pack", "-p",
                                             help="model pack (default: FACEATLAS_PACK or yunet-frfeature)")] = None,
    lfw: Annotated[Path | None, typer.Option(help="LFW images folder (<Name>/*.jpg)")] = None,
    spoof: Annotated[Path | None, typer.Option(help="spoof photo shown at the exit")] = None,
) -> None:
    """Simulate a day in a checkout-free store: enrol members from LFW photos, run visits, face
    pay and a spoof attempt through the real engine, then print the analytics and write the
    charts (PNG), the CSV and the ground truth (JSON) to ``--out``."""
    from faceatlas.apps.retail import (
        RetailStore,
        check_day,
        check_out_folder,
        demo_store,
        draw_charts,
        simulate_day,
        write_csv,
    )

    settings = _settings()
    shared = settings.shared or Path("shared")
    lfw = lfw or shared / "data" / "lfw" / "images"
    if not lfw.is_dir():
        fail(InvalidInput(f"{lfw}: no LFW images folder there (set FACEATLAS_SHARED or --lfw)"))
    try:  # every argument checked before anything is made (--members 0 left retail.db and an empty bar)
        check_day(lfw, members=members, visits=visits)
        if out is not None:
            check_out_folder(out)
        if spoof is not None:  # given: it must be a photo (it was dropped, or failed at the 19th of 20 events)
            decoded_pixels(str(spoof))
    except FaceAtlasError as exc:
        fail(exc)
    spoof = spoof or shared / "data" / "antispoof_samples" / "image_F1.jpg"
    out = out or Path(tempfile.mkdtemp(prefix="faceatlas-retail-"))
    made = _missing_folders(out)
    out.mkdir(parents=True, exist_ok=True)
    database = out / "retail.db"
    for stale in out.glob("retail.db*"):
        stale.unlink()
    kept = set(out.iterdir())
    started = time.perf_counter()
    try:
        analyzer = FaceAnalyzer(pack or settings.pack_name(), announce_license=False, settings=settings)
        with RetailStore.open(demo_store(), analyzer, f"sqlite:///{database}", index_dir=out / "indexes") as store:
            with progress(Console(stderr=True)) as bar:
                task = bar.add_task("simulated events", total=None)
                result = simulate_day(store, lfw, spoof if spoof.is_file() else None, members=members,
                                      visits=visits, seed=seed,
                                      on_event=lambda done, total: bar.update(task, completed=done, total=total))
            report = store.report(result.start, result.end)
            alerts = store.alerts()
    except FaceAtlasError as exc:  # one line on stderr, as every command says it; a refused run writes nothing
        _remove_new(out, kept, made)
        fail(exc)
    _print_report(report, result.outcomes, alerts)
    charts = draw_charts(report, out)
    csv_path = write_csv(report, out / "retail_analytics.csv")
    (out / "ground_truth.json").write_text(json.dumps(vars(result.truth), indent=2, default=str))
    console.print(f"charts: {', '.join(p.name for p in charts)}; CSV: {csv_path.name}; database: {database.name}")
    console.print(f"written to {escape(str(out))} in {time.perf_counter() - started:.1f} s")


def _missing_folders(out: Path) -> list[Path]:
    """``out`` and its parents that are not there yet (the deepest first): what ``mkdir`` makes."""
    return [folder for folder in (out, *out.parents) if not folder.exists()]


def _remove_new(out: Path, kept: set[Path], made: list[Path]) -> None:
    """Take back what a failed run wrote: the files and folders in ``out`` that were not in
    ``kept``, then the folders it made (``made``, deepest first; a casting that found too few
    members, known only after minutes of analysis, left retail.db and its indexes)."""
    from faceatlas.video import remove_made_folders  # the video layer only when a run failed

    for path in set(out.iterdir()) - kept:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    remove_made_folders(made)


def _print_report(report: Report, outcomes: list[ExitOutcome], alerts: list[dict]) -> None:
    """The day's analytics as rich tables."""
    summary = WholeTable(title=f"Store analytics {report.start:%Y-%m-%d}")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    for key, value in report.summary().items():
        shown: object = f"{value / 100:.2f}" if key.endswith("_cents") else \
            f"{value:.1%}" if key == "conversion" else value
        summary.add_row(key.removesuffix("_cents"), str(shown))
    console.print(summary)
    hours = {f"{h:02d}:00": n for h, n in report.visits_per_hour.items()}
    sections: tuple[tuple[str, dict[Any, Any]], ...] = (
        ("Visits per hour", hours), ("Dwell time (min)", report.dwell_histogram),
        ("Zone heat (visits)", report.zone_heat), ("Basket size (items)", report.basket_sizes),
        ("Declared age band", report.age_mix), ("Declared gender", report.gender_mix), ("Staff alerts", report.alerts))
    for title, values in sections:
        table = WholeTable(title=title)
        table.add_column("key")
        table.add_column("count", justify="right")
        for key, value in values.items():
            table.add_row(str(key), str(value))
        console.print(table)
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        label = f"{outcome.status} (retried)" if outcome.repeated else outcome.status
        statuses[label] = statuses.get(label, 0) + 1
    console.print("exits: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    console.print(f"open staff alerts: {len(alerts)}")
