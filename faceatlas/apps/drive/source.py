"""The driver's frames, read through the video layer's :class:`~faceatlas.video.VideoSource`
(a video file, a webcam index or an RTSP/HTTP URL), as the ``(index, seconds, image)`` tuples that
:meth:`DriverMonitor.run` takes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from faceatlas.video import VideoSource, is_live


def timed_frames(source: VideoSource, stop: int | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(index, seconds, BGR frame)`` of ``source`` up to (not including) frame number ``stop``.

    Files are timed by their frame rate (frame ``i`` at ``i / fps``); live sources by the wall
    clock from the first frame read. The source is closed when the iterator ends or is closed.
    """
    frames = iter(source)
    began: float | None = None
    try:
        for frame in frames:
            if stop is not None and frame.index >= stop:
                return
            if not source.live and source.fps:
                seconds = frame.index / source.fps
            else:
                began = time.monotonic() if began is None else began
                seconds = time.monotonic() - began
            yield frame.index, seconds, frame.image
    finally:
        frames.close()  # type: ignore[attr-defined]  # a generator: closes the decoder
        source.close()


def iter_frames(
    spec: str | int | Path, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(index, seconds, BGR frame)`` from ``start`` up to (not including) ``stop``.

    Files are timed by their frame rate and seeked to ``start``; live sources (webcams, streams)
    are timed by the wall clock, numbered from 0, and drop frames when processing falls behind.
    """
    source = VideoSource(spec, start=0 if is_live(spec) else start)
    return timed_frames(source, stop)
