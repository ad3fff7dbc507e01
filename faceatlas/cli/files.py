"""Input files of the commands: images given one by one or as folders, and the progress bar over them;
the engine's word on an int8 copy being made (minutes, once, on a command's first use of
``FACEATLAS_RUNTIME=int8``; ``engine.quantize``: INFO on the ``faceatlas.int8`` logger, which a
command without logging configured would drop) shown on stderr."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from faceatlas.engine import IMAGE_SUFFIXES, images_in
from faceatlas.errors import CommandLineError, InvalidInput

INT8_LOGGER = "faceatlas.int8"
STDIN = "-"  # an image argument that stands for standard input (`detect -`, `remote detect -`)
_err = Console(stderr=True)


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


def one_stdin(paths: Iterable[Path]) -> None:
    """Standard input is read once: ``-`` given for more than one image is :class:`CommandLineError`."""
    if sum(str(path) == STDIN for path in paths) > 1:
        raise CommandLineError(f"'{STDIN}' (standard input) may stand for one image only")


def image_source(path: Path) -> Path | bytes:
    """What the engine decodes for the image argument ``path``: ``-`` is the bytes of standard input
    (`curl ... | faceatlas detect -`), decoded as a file's are (its pixel limit checked from the
    header first), any other path the file (a file named ``-`` itself: ``"$PWD/-"``; ``./-`` is
    ``-`` once the argument is a path)."""
    return stdin_stream().read() if str(path) == STDIN else path


def input_bytes(path: Path) -> bytes:
    """The bytes of the input file ``path``, or of standard input for ``-`` (a video, a document:
    what a layer takes as bytes)."""
    return stdin_stream().read() if str(path) == STDIN else path.read_bytes()


def stdin_stream() -> IO[bytes]:
    """Standard input's bytes, for an image given as ``-``; :class:`InvalidInput` when the command
    started with it closed (``<&-``: Python's ``sys.stdin`` is None, and ``remote detect -`` was a
    traceback)."""
    if sys.stdin is None:
        raise InvalidInput(f"'{STDIN}': the standard input is closed: give an image file, or the image on it")
    return sys.stdin.buffer


def progress(console: Console, *, disable: bool = False, keep_stdout: bool = False) -> Progress:
    """A progress bar (description, bar, done/total, time left) on ``console``; ``disable``: none at all.
    The description is plain text, as written: a camera named 'Lobby [east]' was "Lobby" (markup).
    ``keep_stdout``: standard output is left as it is while the bar shows (on a terminal rich puts its
    own in its place, above the bar: `watch --events - | head` wrote its events there, to the terminal)."""
    return _Bar(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=console, disable=disable, redirect_stdout=not keep_stdout)


class _Bar(Progress):
    """A progress bar that leaves nothing behind when it never showed a task (a command that failed
    before its first step): its last drawing, into a file or a pipe, was an empty line on stderr
    before the error's (`watch missing.mp4`)."""

    def stop(self) -> None:
        if self.tasks or self.disable:
            super().stop()
            return
        self.live.transient = True  # nothing drawn, nor rich's empty line after it into a file
        self.live.stop()


@contextmanager
def stage_progress(console: Console, *, disable: bool = False) -> Iterator[Callable[[str, int, int], None]]:
    """:func:`progress` for work told in stages: the callback ``report(stage, done, total)`` gives each
    stage its own bar (a stage told again from a lower count, a second file's, gets a new one). A
    stage of one step not yet done pulses (int8's quantising: a minute or more without a count)."""
    with progress(console, disable=disable) as bar:
        tasks: dict[str, tuple[TaskID, int]] = {}  # each stage's bar and its count

        def report(stage: str, done: int, total: int) -> None:
            task, before = tasks.get(stage, (None, 0))
            if task is None or done < before:
                task = bar.add_task(stage, total=total)
            tasks[stage] = (task, done)
            bar.update(task, completed=done, total=None if total == 1 and done == 0 else total)

        yield report


class _OnStderr(logging.Handler):
    """The record as one line on stderr (above a progress bar, if one shows), unless a handler of
    the logging the process configured shows it already (`serve`'s, `watch`'s: not twice)."""

    def emit(self, record: logging.LogRecord) -> None:
        if _shown_elsewhere(record):
            return
        try:
            _err.print(f"[dim]{escape(self.format(record))}[/dim]", soft_wrap=True, highlight=False)
        except OSError:  # pragma: no cover - a broken stderr: logging's own report
            self.handleError(record)


def _shown_elsewhere(record: logging.LogRecord) -> bool:
    """Whether a handler of the process's logging (not this one, nor one that shows nothing) shows
    ``record`` (the one on stderr the quantiser holds on the root, for warnings and errors, does)."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        if any(not isinstance(h, _OnStderr | logging.NullHandler) and record.levelno >= h.level
               for h in logger.handlers):
            return True
        logger = logger.parent if logger.propagate else None
    return False


def show_int8_notices() -> None:
    """Say the engine's INFO lines about an int8 copy being made on stderr (once per process)."""
    logger = logging.getLogger(INT8_LOGGER)
    if not any(isinstance(h, _OnStderr) for h in logger.handlers):
        logger.addHandler(_OnStderr(logging.INFO))
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
