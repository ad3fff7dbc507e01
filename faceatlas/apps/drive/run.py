"""The `drive` use case: read a source frame by frame, monitor the driver, write the events and an
annotated video when asked, and return the session summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import NoReturn

import numpy as np

from faceatlas.apps.drive.config import DriveConfig
from faceatlas.apps.drive.events import DriveEvent
from faceatlas.apps.drive.monitor import DriverMonitor
from faceatlas.apps.drive.overlay import draw_report
from faceatlas.apps.drive.source import timed_frames
from faceatlas.errors import FaceAtlasError, InvalidArgument
from faceatlas.video import (
    JsonlSink,
    VideoSource,
    VideoWriter,
    check_outputs,
    check_video_path,
    interrupts_held,
    prepare_output_file,
    source_failure,
)
from faceatlas.video.annotate import close_output_video, noting_removal, output_video_failed
from faceatlas.video.config import remove_made_folders
from faceatlas.video.sinks import events_write_failed


def run_drive(
    source: str,
    config: DriveConfig,
    *,
    output: Path | None = None,
    events: Path | None = None,
    max_frames: int | None = None,
    on_event: Callable[[DriveEvent], None] | None = None,
    on_frame: Callable[[int, int | None], None] | None = None,
) -> dict[str, object]:
    """Monitor the driver on ``source`` (file, webcam index, URL) until it ends, ``max_frames`` or
    Ctrl-C. Each event goes to ``events`` (JSON lines) and to ``on_event``; ``output`` gets the
    annotated video; ``on_frame(done, total)`` after each frame (total None for live sources).
    Returns :meth:`DriverMonitor.summary`, with ``"interrupted": True`` when Ctrl-C stopped a file
    before its end (what was written is kept, closed: a valid video of the frames done); Ctrl-C is
    how a live source ends. ``output`` and ``events`` that name the source file or
    each other (links resolved) are :class:`InvalidArgument`, and ones that cannot be written
    :class:`InvalidInput` naming them, before anything is opened; a write that fails later (a full
    disk, a file size limit) names the output or the events file too: only a source that cannot be
    opened or read is "cannot read video source". A video whose write or close failed is cut short
    and plays nowhere: it is removed, and the error says so. A close that fails never hides the
    error that ended the run. The folders made for ``output`` and ``events`` are removed again when
    the run fails, those left empty. ``events`` ``-`` (standard output) whose reader went away
    (piped to `head`) raises :class:`BrokenPipeError` as it is."""
    if max_frames is not None and max_frames < 1:
        raise InvalidArgument(f"max_frames stops after that many frames, 1 or more, not {max_frames}")
    if output is not None:
        check_video_path(output)  # before the source is opened
    check_outputs(str(source), output=output, events=events)
    made: list[Path] = []  # the folders made for the outputs: removed again (the empty ones) if the run fails
    try:
        if output is not None:  # one that cannot be written failed at the first frame, as "cannot read video source"
            prepare_output_file(output, "output", made=made)
        if events is not None and str(events) != "-":  # '-': standard output
            prepare_output_file(events, "events", made=made)
        return _monitor(source, config, output, events, max_frames, on_event, on_frame)
    except BaseException:
        remove_made_folders(made)
        raise


def _monitor(source: str, config: DriveConfig, output: Path | None, events: Path | None, max_frames: int | None,
             on_event: Callable[[DriveEvent], None] | None, on_frame: Callable[[int, int | None], None] | None,
             ) -> dict[str, object]:
    """:func:`run_drive` once its outputs are checked and their folders made."""
    frames = VideoSource(source)
    timed = _read(timed_frames(frames, max_frames), source)
    monitor = DriverMonitor(config)
    writer: JsonlSink | None = None
    video: VideoWriter | None = None
    interrupted = False
    failure: FaceAtlasError | None = None  # what ended the run: raised once the events and the video are closed
    unflushed: OSError | None = None  # the events' last lines could not be written
    try:
        # the source opens before anything is written; Ctrl-C (or SIGTERM) while a stream that never
        # opened is retried ends the run as it does later, with its summary (it was status 130, none)
        first = next(timed, None)
        writer = _open_events(events) if events else None
        video = VideoWriter(output, frames.fps or 25.0) if output is not None else None  # opened at the first frame
        for index, seconds, frame in chain([first] if first is not None else [], timed):
            report = monitor.process(frame, seconds, index)
            for event in report.events:
                if writer is not None and events is not None:
                    _emit(writer, event, events)
                if on_event:
                    on_event(event)
            if video is not None:
                _write(video, draw_report(frame, report))
            if on_frame is not None:
                total = frames.frames
                on_frame(index + 1, min(total, max_frames) if total and max_frames else total or max_frames)
    except KeyboardInterrupt:
        interrupted = not frames.live
    except FaceAtlasError as exc:
        failure = exc
    finally:  # a close that fails is raised below, unless another error ended the run already
        with interrupts_held("closing the events and the video"):  # a second Ctrl-C lost them and the summary
            monitor.close()
            if writer is not None:
                try:
                    writer.close()
                except OSError as exc:
                    unflushed = exc
            unfinished, removed = close_output_video(video)  # one cut short is removed: it plays nowhere
    if failure is None and unflushed is not None and events is not None:
        failure = _events_failure(unflushed, events)
    if failure is None and unfinished is not None:
        failure = output_video_failed(unfinished)
        failure.__cause__ = unfinished
    if failure is not None:
        raise noting_removal(failure, removed)
    summary = monitor.summary()
    if interrupted:
        summary["interrupted"] = True
    return summary


def _read(frames: Iterator[tuple[int, float, np.ndarray]], source: str) -> Iterator[tuple[int, float, np.ndarray]]:
    """``frames``; an :class:`OSError` of reading them (the source cannot be opened or read) is
    :class:`InvalidInput` naming the source. Only these: a write that fails (the events, the video)
    names what it writes."""
    try:
        yield from frames
    except OSError as exc:
        raise source_failure(exc, source) from exc


def _open_events(events: Path) -> JsonlSink:
    try:
        return JsonlSink(events, append=False)
    except OSError as exc:
        _events_failed(exc, events)


def _emit(writer: JsonlSink, event: DriveEvent, events: Path) -> None:
    try:
        writer.emit(event)
    except OSError as exc:
        _events_failed(exc, events)


def _events_failed(exc: OSError, events: Path) -> NoReturn:
    raise _events_failure(exc, events) from exc


def _events_failure(exc: OSError, events: Path) -> FaceAtlasError:
    """An events file that cannot be written (a full disk, a file size limit) names it, not the
    source; a reader that went away (:class:`BrokenPipeError` of ``--events -`` piped to `head`)
    is raised as it is: the caller ends quietly, as Unix tools do."""
    if isinstance(exc, BrokenPipeError):
        raise exc
    error = events_write_failed(exc, events)
    error.__cause__ = exc
    return error


def _write(video: VideoWriter, image: np.ndarray) -> None:
    """One frame into the output video; a failure (the writer did not open, the disk is full) names
    the output, not the source."""
    try:
        video.write(image)
    except OSError as exc:
        raise output_video_failed(exc) from exc
