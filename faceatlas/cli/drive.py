"""`faceatlas drive`: driver monitoring (SenseDrive) on a video file, a webcam or an RTSP stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from faceatlas.cli.errors import Output, WholeTable, fail, fail_import, json_text, writing_stdout
from faceatlas.cli.files import progress
from faceatlas.errors import FaceAtlasError, InvalidArgument
from faceatlas.video import EVENTS_STDOUT

err = Console(stderr=True)
LEVEL_STYLES = {"info": "dim", "warning": "yellow", "alert": "red", "critical": "bold red"}


def _file(value: str, option: str, example: str) -> Path:
    """``value`` of ``option`` as a path; an empty one is refused (it was the current folder '.':
    "error (bad_request): .: is a directory")."""
    if not value:
        raise InvalidArgument(f"{option} is empty: give a file, such as {example} (an unset shell variable?)")
    return Path(value)


def _region(text: str) -> tuple[float, float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise typer.BadParameter("give x1,y1,x2,y2 as fractions of the frame, e.g. 0,0,0.6,1")
    return values[0], values[1], values[2], values[3]


def _seat(text: str) -> Literal["left", "right", "any"]:
    sides: dict[str, Literal["left", "right", "any"]] = {"left": "left", "right": "right", "any": "any"}
    if text in sides:
        return sides[text]
    raise typer.BadParameter("give left, right (the side of the image the driver sits in) or any")


def drive(
    source: Annotated[str, typer.Argument(help="video file, webcam index (0) or rtsp:// URL")],
    output: Annotated[str | None, typer.Option("--output", "-o", help="write an annotated video (mp4)")] = None,
    events: Annotated[str | None, typer.Option("--events", help="write events as JSON lines (- : to stdout, "
                                                "the summary then on stderr)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="events as JSON lines on stdout, summary last")] = False,
    region: Annotated[str, typer.Option(help="driver region x1,y1,x2,y2 (fractions)")] = "0,0,1,1",
    seat: Annotated[str, typer.Option(help="side of the image the driver sits in: left, right or any")] = "any",
    calibration: Annotated[float, typer.Option(help="seconds of open-eye / road-ahead calibration")] = 5.0,
    max_frames: Annotated[int | None, typer.Option(help="stop after this many frames")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Monitor the driver: eyes, blinks, PERCLOS, yawns, head pose, gaze, presence; alerts as events."""
    try:
        from faceatlas.apps.drive import DriveConfig, DriveEvent, quiet_mediapipe, run_drive
    except ImportError as exc:
        fail_import(exc, "drive", as_json)
    quiet_mediapipe(native=True)  # MediaPipe's start-up lines on stderr: of no use to whoever runs this

    def show(event: DriveEvent) -> None:
        if as_json:
            with writing_stdout():
                print(event.to_json(), flush=True)
            return
        style = LEVEL_STYLES[event.level.name.lower()]
        err.print(f"[{style}]{event.t:8.2f}s #{event.frame:<6} {event.level.name:<8} {event.type}"
                  f"[/{style}] {json.dumps(event.details)}")

    to_stdout = events is not None and str(events) == EVENTS_STDOUT
    try:
        if to_stdout and as_json:  # each event would be printed twice, in one stream
            raise InvalidArgument("--json writes the events to stdout as JSON lines already (summary last): "
                                  "drop --events -, or give --events a file")
        video = _file(output, "--output", "out.mp4") if output is not None else None
        events_file = _file(events, "--events", "events.jsonl (or - for standard output)") \
            if events is not None else None
        config = DriveConfig(driver_region=_region(region), driver_side=_seat(seat), calibration_s=calibration)
        with progress(err, disable=quiet) as bar:
            tasks: list = []  # the bar's task, added at the first frame: a source that does not open shows none

            def advance(done: int, total: int | None) -> None:
                if not tasks:
                    tasks.append(bar.add_task("drive", total=total))
                bar.update(tasks[0], completed=done, total=total)

            summary = run_drive(source, config, output=video, events=events_file, max_frames=max_frames, on_event=show,
                                on_frame=advance)
    except FaceAtlasError as exc:  # with --json one JSON object on stdout, as the events and the summary
        fail(exc, as_json)
    except ImportError as exc:
        fail_import(exc, "drive", as_json)
    _report_summary(summary, as_json, to_stderr=to_stdout)  # stdout holds the events' JSON lines alone
    if summary.get("interrupted"):  # Ctrl-C before the file's end: as Ctrl-C elsewhere in this CLI
        raise typer.Exit(130)


def _report_summary(summary: dict[str, object], as_json: bool, *, to_stderr: bool = False) -> None:
    if as_json:
        with writing_stdout():
            print(json_text({"summary": summary}))
        return
    table = WholeTable(title="SenseDrive summary")
    table.add_column("measure")
    table.add_column("value")
    for key, value in summary.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    with writing_stdout():
        (err if to_stderr else Output()).print(table)
