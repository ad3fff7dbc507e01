"""`faceatlas watch`: run the video pipeline on one source or on the cameras of a YAML file;
`faceatlas counts`: a camera's stored per-minute counts, as a table and PNG charts."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import TaskID
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from faceatlas.cli.errors import Output, WholeTable, emit_json, print_camera_failures, stdout_gone
from faceatlas.cli.files import progress
from faceatlas.cli.options import database_option
from faceatlas.db import default_database_url
from faceatlas.errors import NotFound
from faceatlas.settings import RetentionSettings
from faceatlas.video import (
    CameraConfig,
    LineSpec,
    RecognitionConfig,
    WatchConfig,
    WatchReport,
    camera_counts,
    camera_name,
    check_chart_path,
    check_measure,
    load_config,
    measure_note,
    occupancy,
    plot_counts,
    plot_heatmap,
    run_watch,
)

# names (cameras, lines, zones) are the user's: printed as written, neither Rich markup ('[/door]' was a
# MarkupError after the run, 'Lobby [east]' read "Lobby") nor emoji codes (zone 'door': 'zone🚪max')
err = Console(stderr=True, emoji=False)


def watch(
    source: Annotated[str | None, typer.Argument(help="video file, rtsp:// or http:// URL, or webcam index")] = None,
    collection: Annotated[str | None, typer.Option(help="gallery collection to recognise against")] = None,
    config: Annotated[Path | None, typer.Option(help="cams.yaml with several cameras and the sinks")] = None,
    stride: Annotated[int | None, typer.Option(help="detect on every Nth frame [default: 2]")] = None,
    line: Annotated[list[str] | None, typer.Option(help="counting line x1,y1,x2,y2 (repeatable)")] = None,
    events: Annotated[Path | None, typer.Option(help="write events as JSON lines here (- : to stdout)")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write an annotated video here")] = None,
    pack: Annotated[str | None, typer.Option("--pack", "-p", help="model pack (default: the collection's, else "
                                             "FACEATLAS_PACK or yunet-frfeature)")] = None,
    gallery: Annotated[str | None, typer.Option("--gallery", "--db", callback=database_option,
                                                help="gallery database URL or SQLite file (--db as every other "
                                                     "command's)")] = None,
    persons: Annotated[bool, typer.Option(help="detect and count persons too")] = True,
) -> None:
    """Watch video sources: track faces and persons, recognise, count, and emit events.

    Events (and per-minute counts) are stored in the database of cams.yaml's `database:`, else in
    the settings' database (FACEATLAS_DATABASE_URL, else ~/.local/share/faceatlas/faceatlas.db), where
    `faceatlas counts` and `faceatlas serve` (GET /v1/events) read them. With FACEATLAS_EVENT_RETENTION_DAYS
    set, its events older than that (and their snapshots) are deleted at the start and every
    FACEATLAS_RETENTION_SWEEP_SECONDS, as the server does.

    Exit 1 when a sink (MQTT, webhook, database) could not deliver some events (the summary names
    it and how many), or when some cameras failed (each named, with why, after the others' summary;
    2 when every camera failed); 130 when Ctrl-C (or SIGTERM) stopped a file's camera before the
    file's end."""
    # FaceAtlas's own INFO lines (reconnects, the pack's licence); other libraries' warnings only (Alembic
    # said "setup plugin ..." nine times as the events database was made)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faceatlas").setLevel(logging.INFO)
    if config is not None:
        beside = [name for name, given in (("SOURCE", source is not None), ("--stride", stride is not None),
                                           ("--line", bool(line)), ("--output", output is not None)) if given]
        if beside:  # they were dropped without a word
            raise typer.BadParameter(f"--config names the cameras and their settings; give {', '.join(beside)} "
                                     "in its file, not beside it")
        settings = load_config(config)
    elif source is not None:
        if Path(source).suffix.lower() in (".yaml", ".yml"):  # read as a video: "[Errno 1094995529] Invalid data"
            raise typer.BadParameter(f"{source} is a config file, not a video: use --config {source}")
        lines = [LineSpec.parse(text, f"line{i}") for i, text in enumerate(line or [], 1)]
        camera = CameraConfig(source=source, name=camera_name(source), stride=2 if stride is None else stride,
                              lines=lines, output=output, recognition=RecognitionConfig())
        settings = WatchConfig([camera], collection=collection, gallery=gallery, events=events)
    else:
        raise typer.BadParameter("give a SOURCE or --config")
    settings.collection = collection or settings.collection
    settings.events = events or settings.events
    # events and per-minute counts go where `counts` and the service (GET /v1/events) read them: the
    # config's `database:`, else the settings' database (FACEATLAS_DATABASE_URL, else the default file)
    settings.database = settings.database or default_database_url()
    # the events database's old events go as the server's sweep deletes them (FACEATLAS_EVENT_RETENTION_DAYS,
    # every FACEATLAS_RETENTION_SWEEP_SECONDS): a camera box with no `serve` kept them for ever
    retention = RetentionSettings()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C: events are flushed
    with progress(err, keep_stdout=str(settings.events) == "-") as bar:  # the events are the output then
        tasks: dict[str, TaskID] = {}

        def advance(camera: str, index: int, total: int | None) -> None:  # from the cameras' threads
            if camera not in tasks:
                tasks[camera] = bar.add_task(camera, total=total)
            bar.update(tasks[camera], completed=index + 1)

        report = run_watch(settings, pack=pack, persons=persons, on_frame=advance,
                           retention_days=retention.event_retention_days,
                           sweep_seconds=retention.retention_sweep_seconds)
    if report.reader_gone:  # `--events - | head -1`: the run stopped for it; nothing to say, as Unix tools
        stdout_gone()
    for table in summary_tables(report):
        err.print(table)
    # where `counts` reads them (one line: a path broken over two cannot be copied)
    err.print(f"events database: {_shown_url(settings.database)}", markup=False, soft_wrap=True)
    if report.expired:
        err.print(f"deleted {report.expired} stored events older than {retention.event_retention_days:g} days "
                  "(FACEATLAS_EVENT_RETENTION_DAYS), with their snapshots", markup=False, soft_wrap=True)
    lost = {sink: count for sink, count in report.undelivered.items() if count}
    for sink, count in lost.items():
        dead = report.dead_letters.get(sink)
        written = f" ({dead[0]} written to the dead letter file {dead[1]})" if dead else ""
        err.print(f"{sink}: {count} events not delivered{written}", markup=False, soft_wrap=True)
    stopped = [stats for stats in report.cameras if stats.interrupted]
    for stats in stopped:
        err.print(f"interrupted: camera {stats.camera} stopped after {stats.frames} frames, before its file's end",
                  markup=False)
    print_camera_failures(report.failed, err)
    if report.exit_status:  # 130 stopped, 1 cameras failed (2: all) or events not delivered
        raise typer.Exit(report.exit_status)


def summary_tables(report: WatchReport) -> list[Table]:
    """The run in two narrow tables (they fit 80 columns): one row per camera and measure
    (lines as "name: direction count, ...": every class's crossings, then each class's), then the
    events by type. Names are escaped, not read
    as Rich markup (print them on a console without emoji codes, as :data:`err` is)."""
    cameras = WholeTable("camera", "measure", "value", title="faceatlas watch")
    for stats in report.cameras:
        source = stats.source
        measures = [("frames (analyzed)", f"{stats.frames} ({stats.analyzed})"), ("frames/s", f"{stats.fps:.1f}"),
                    ("dropped / corrupt", f"{source.dropped} / {source.corrupt}"),
                    ("reconnects", str(source.reconnects))]
        if source.expected:  # a file cut short: it ended before the frames its container states
            measures.append(("ended early", f"{stats.frames} of {source.expected} frames"))
        if stats.snapshots_failed:
            measures.append(("snapshots not written", str(stats.snapshots_failed)))
        measures += [(f"{escape(name)} crossings", _directions(counts)) for name, counts in stats.crossings().items()]
        measures += [(f"{escape(name)} {escape(label)}", _directions(counts))
                     for name, per_class in stats.class_counts.items() for label, counts in per_class.items()]
        for number, (measure, value) in enumerate(measures):
            cameras.add_row(escape(stats.camera) if number == 0 else "", measure, value)
        cameras.add_section()
    events = WholeTable("event", "count", title="events")
    for kind, count in report.events.items():
        events.add_row(kind, str(count))
    if not report.events:
        events.add_row("(none)", "0")
    return [cameras, events]


def _shown_url(url: str) -> str:
    """``url`` without its password (a PostgreSQL URL may hold one)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _directions(counts: dict[str, int]) -> str:
    return ", ".join(f"{direction} {count}" for direction, count in counts.items())


def counts(
    camera: Annotated[str, typer.Argument(help="camera name (as in cams.yaml)")],
    database: Annotated[str | None, typer.Option("--db", "--database", callback=database_option,
                                                 help="database URL the watch wrote to (cams.yaml's database:) "
                                                      "[default: FACEATLAS_DATABASE_URL, where watch writes "
                                                      "without database:]")] = None,
    since: Annotated[str | None, typer.Option("--from", help="ISO 8601, no offset = UTC; from its minute")] = None,
    until: Annotated[str | None, typer.Option("--to", help="ISO 8601, no offset = UTC; before its minute")] = None,
    label: Annotated[str | None, typer.Option("--class", help="one class (person, car, ...)")] = None,
    measure: Annotated[str, typer.Option(help="what to plot: seen, in:LINE, out:LINE, zone:ZONE:max")] = "seen",
    plot: Annotated[Path | None, typer.Option(help="write a PNG of the measure per minute and class here")] = None,
    heatmap: Annotated[Path | None, typer.Option(help="write a PNG of the occupancy heatmap here")] = None,
    tenant: Annotated[str, typer.Option(help="tenant of the stored counts (as cams.yaml's tenant: acme or "
                                             "svc:acme)")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout (the API's counts: "
                                                         "camera, each minute's camera, minute, class, counts; "
                                                         "never truncated)")]
    = False,
) -> None:
    """Per-minute counts of a camera per class: a table (or JSON), and optionally PNG charts."""
    if plot is not None:
        check_measure(measure)
    elif measure != "seen":  # it was ignored without a word
        raise typer.BadParameter("--measure is what --plot draws: give --plot FILE.png too")
    for chart, what in ((plot, "--plot"), (heatmap, "--heatmap")):
        if chart is not None:  # before the table is printed: not a table, then an error
            check_chart_path(chart, what)
    if plot is not None and heatmap is not None and plot.resolve() == heatmap.resolve():
        raise typer.BadParameter(f"--plot and --heatmap are two charts: give two files, not {plot} twice")
    rows = camera_counts(database or default_database_url(), camera, tenant=tenant, since=since, until=until,
                         label=label)
    if not rows:  # an empty table (exit 0) without --plot, the same table and an error with it: one outcome
        of = f" of class {label}" if label else ""
        span = " ".join(f"{word} {value}" for word, value in (("from", since), ("to", until)) if value) or "stored"
        drawn = " or draw" if plot or heatmap else ""
        raise NotFound(f"no counts of camera {camera[:64]!r}{of} {span[:120]}: nothing to show{drawn}")
    if heatmap is not None:
        occupancy(rows)  # no heatmap stored: NotFound before --plot is written (one outcome, not half of one)
    if as_json:  # GET /v1/cameras/{camera}/counts's answer (all the minutes asked: none left out)
        emit_json({"camera": camera, "counts": [row.to_dict() for row in rows], "truncated": False, "next_from": None})
    else:
        table = WholeTable("minute", "class", "counts", title=f"{escape(camera)}: counts per minute")
        for row in rows:  # measures name the user's lines and zones ('zone:door:max' was 'zone🚪max')
            measures = ", ".join(f"{k} {v}" for k, v in sorted(row.counts.items()))
            table.add_row(row.minute, escape(row.label), escape(measures))
        Output(emoji=False).print(table)
    if plot is not None:
        note = measure_note(rows, measure)
        if note is not None:
            err.print(f"warning: {note}", markup=False)
        err.print(f"wrote {plot_counts(rows, plot, measure=measure)}", markup=False)
    if heatmap is not None:
        err.print(f"wrote {plot_heatmap(rows, heatmap)}", markup=False)
