"""`faceatlas ar`: AR face effects on a video file, a webcam or a stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from faceatlas.cli.files import progress

err = Console(stderr=True)


def ar(
    source: Annotated[str, typer.Argument(help="video file, webcam index (0) or rtsp:// / http:// URL")],
    effect: Annotated[list[str], typer.Option("--effect", "-e", help="an effect (repeat for several, applied "
                                              "in order): glasses, hat, mask, smooth, slim, big-eyes, "
                                              "blur-background, green-background")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the video (mp4)")] = None,
    max_frames: Annotated[int | None, typer.Option(help="stop after this many frames", min=1)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Apply AR face effects (stickers, smoothing, warps, background) to every frame; print a summary."""
    try:
        from faceatlas.apps.ar import run_ar
    except ImportError as exc:
        err.print(f"[red]{exc}[/red] (pip install 'faceatlas[ar]')")
        raise typer.Exit(2) from exc
    spec: str | int = int(source) if source.isdigit() else source
    with progress(err, disable=quiet) as bar:
        task = bar.add_task("ar", total=max_frames)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        summary = run_ar(spec, effect, output=output, max_frames=max_frames, on_frame=advance)
    print(json.dumps(summary))
