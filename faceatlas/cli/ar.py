"""`faceatlas ar`: AR face effects on a video file, a webcam or a stream."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from faceatlas.cli.errors import fail, fail_import, json_text, writing_stdout
from faceatlas.cli.files import progress
from faceatlas.errors import FaceAtlasError, InvalidArgument

err = Console(stderr=True)


def _anchors(text: str | None) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """``x1,y1,x2,y2`` as two points."""
    if text is None:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise InvalidArgument(f"--sticker-anchors is x1,y1,x2,y2 (pixels of the PNG), not {text!r}") from exc
    return (x1, y1), (x2, y2)


def _file(value: str, option: str, example: str) -> Path:
    """``value`` of ``option`` as a path; an empty one is refused (it was the current folder '.':
    ".: cannot write a video with suffix '(none)'")."""
    if not value:
        raise InvalidArgument(f"{option} is empty: give a file, such as {example} (an unset shell variable?)")
    return Path(value)


def ar(
    source: Annotated[str, typer.Argument(help="video file, webcam index (0) or rtsp:// / http:// URL")],
    effect: Annotated[list[str] | None, typer.Option("--effect", "-e", help="an effect (repeat for several, "
                                                     "applied in order): glasses, hat, mask, smooth, slim, "
                                                     "big-eyes, blur-background, green-background")] = None,
    sticker: Annotated[str | None, typer.Option("--sticker", help="a PNG with transparency (alpha) drawn on "
                                                 "each face after the effects")] = None,
    sticker_on: Annotated[str | None, typer.Option(help="where the PNG sits: eyes (outer eye corners, the "
                                                   "default), temples or cheeks")] = None,
    sticker_anchors: Annotated[str | None, typer.Option(help="x1,y1,x2,y2: the PNG's two pixels that go onto "
                                                        "the left and right point (default: the middles of its "
                                                        "left and right edges)")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="write the video (mp4)")] = None,
    max_frames: Annotated[int | None, typer.Option(help="stop after this many frames", min=1)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="errors as one JSON object on stdout too (the summary "
                                          "is JSON either way)")] = False,
) -> None:
    """Apply AR face effects (stickers, smoothing, warps, background) to every frame; print a summary."""
    try:
        from faceatlas.apps.ar import Effect, Sticker, StickerArt, run_ar
        from faceatlas.apps.drive import quiet_mediapipe
    except ImportError as exc:
        fail_import(exc, "ar", as_json)
    quiet_mediapipe(native=True)  # MediaPipe's start-up lines on stderr: of no use to whoever runs this
    try:
        effects: list[str | Effect] = list(effect or [])
        video = _file(output, "--output", "out.mp4") if output is not None else None
        if sticker is not None:
            png = _file(sticker, "--sticker", "crown.png (a PNG with transparency)")
            effects.append(Sticker(StickerArt.from_png(png, _anchors(sticker_anchors), on=sticker_on or "eyes")))
        elif sticker_on is not None or sticker_anchors is not None:  # they were ignored
            raise InvalidArgument("--sticker-on and --sticker-anchors place a --sticker: give the PNG")
        if not effects:
            raise InvalidArgument("give at least one --effect or a --sticker")
        spec: str | int = int(source) if source.isascii() and source.isdigit() else source  # '²' is no index
        with progress(err, disable=quiet) as bar:
            task = bar.add_task("ar", total=max_frames)

            def advance(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total)

            summary = run_ar(spec, effects, output=video, max_frames=max_frames, on_frame=advance)
    except FaceAtlasError as exc:  # with --json one JSON object on stdout, as the summary
        fail(exc, as_json)
    if video is None:  # the effects ran on every frame and nothing came of them, without a word (said once
        # the run is done: a source that does not open is the one line said)
        err.print("note: no --output: the effects are applied and counted, no video is written "
                  "(give --output out.mp4 to keep it)", soft_wrap=True)
    with writing_stdout():
        print(json_text(summary))
    if summary.get("interrupted"):  # Ctrl-C before the file's end: as Ctrl-C elsewhere in this CLI
        raise typer.Exit(130)
