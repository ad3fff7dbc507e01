"""Input files of the commands: images given one by one or as folders, and the progress bar over them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from faceatlas.engine import IMAGE_SUFFIXES, images_in
from faceatlas.errors import InvalidInput


def folder_images(folder: Path) -> list[Path]:
    """The photos directly in ``folder`` (:func:`~faceatlas.engine.images_in`: the images the engine
    decodes, HEIC/HEIF photos, dangling links and FIFOs named as photos, each of which the command
    then reports as it does one named; hidden ones left out); a folder without any is
    :class:`InvalidInput` (a wrong folder given is said, not taken for nothing to do)."""
    found = images_in(folder)
    if not found:
        raise InvalidInput(f"{folder}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def expand_images(paths: Iterable[Path]) -> list[Path]:
    """``paths`` with each folder replaced by the images in it (other paths are kept as given, so
    that a missing or unreadable file is reported by the command); a folder without images is
    :class:`InvalidInput`."""
    return [image for path in paths for image in (folder_images(path) if path.is_dir() else [path])]


def progress(console: Console, *, disable: bool = False) -> Progress:
    """A progress bar (description, bar, done/total, time left) on ``console``; ``disable``: none at all.
    The description is plain text, as written: a camera named 'Lobby [east]' was "Lobby" (markup)."""
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, disable=disable)
