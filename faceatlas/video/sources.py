"""Frame sources: video files, RTSP/HTTP streams (PyAV) and webcams by index (OpenCV).

Files are read frame by frame in the caller's thread, nothing dropped (``realtime``: at their
frame rate, dropping what the caller cannot keep up with, as a camera); so is a file served over
HTTP(S) (a length or a duration known when it opens): it ends at its end. Live sources are read
by a background thread into a small buffer: when processing falls behind, the oldest frames
are dropped (and counted) so that lag does not grow; a stream that drops is reopened with
exponential backoff. Frames that fail to decode are skipped and counted. Frames come upright,
as a player shows them: a file's display rotation (a phone's portrait video, stored sideways) is
applied (:func:`~faceatlas.engine.image.display_upright`), so their size is the turned size.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from faceatlas.engine.image import display_upright
from faceatlas.errors import FileMissing, InvalidInput

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
HTTP_SCHEMES = ("http://", "https://")
PLAYLIST_FORMATS = frozenset({"hls", "dash"})  # their length is the playlist's: only a duration makes them finite
MAX_WEBCAM_INDEX = 9999  # OpenCV's indexes (with a backend's offset, such as 1400 + n) stay far below


@dataclass
class Frame:
    """One decoded frame: its number in the source (dropped frames count), time in seconds, BGR pixels."""

    index: int
    time: float
    image: np.ndarray


@dataclass
class SourceStats:
    """What the source did so far."""

    decoded: int = 0
    corrupt: int = 0
    dropped: int = 0
    reconnects: int = 0
    expected: int | None = None  # set when a file ended before the frame count its container states: that count


def is_webcam(spec: str | int | Path) -> bool:
    """True for a webcam index: ASCII digits (``'²'`` is a digit to Python, and no index)."""
    text = str(spec)
    return text.isascii() and text.isdigit()


def check_webcam_index(spec: str | int | Path) -> None:
    """:class:`InvalidInput` (no such camera) for a webcam index above :data:`MAX_WEBCAM_INDEX`:
    OpenCV raised on one beyond a C int in the reader thread, and the run ended as if the camera had
    sent no frame (exit 0)."""
    if is_webcam(spec) and int(str(spec)) > MAX_WEBCAM_INDEX:
        raise InvalidInput(f"no such camera: {str(spec)[:30]!r} is no webcam index (0 to {MAX_WEBCAM_INDEX})")


def is_live(spec: str | int | Path) -> bool:
    """True for webcams (an index) and network streams."""
    return is_webcam(spec) or str(spec).lower().startswith(LIVE_SCHEMES)


def is_finite(container: av.container.InputContainer) -> bool:
    """True when an opened network source is a file (it ends; it is not a stream to reconnect to):
    it has a duration, or the server said its length (Content-Length) and it is no playlist."""
    if container.duration is not None and container.duration > 0:
        return True
    return container.format.name not in PLAYLIST_FORMATS and (container.size or 0) > 0


def check_video_file(path: str | Path) -> None:
    """Open the video file ``path`` and close it again: ``OSError`` (as :class:`VideoSource` raises
    it when iterated) when it cannot be opened or holds no video stream. Lets a use case refuse a
    file that is no video before it writes anything (its events file, its output video)."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:  # FFmpeg's reason without its error number and the path again
        raise OSError(f"cannot open video source {str(path)!r}: {(exc.strerror or str(exc)).lower()}") from exc
    with container:
        if not container.streams.video:
            raise OSError(f"no video stream in {str(path)!r}")


def source_error(exc: OSError, source: str | int | Path) -> str:
    """What a door says of an ``OSError`` of reading the video source ``source``: the source once,
    then why (a zero-byte file was "cannot read video source 'x': cannot open video source 'x':
    [Errno 1094995529] Invalid data found when processing input: 'x'")."""
    return f"cannot read video source {str(source)!r}: {getattr(exc, 'reason', None) or exc}"


def source_failure(exc: OSError, source: str | int | Path) -> InvalidInput:
    """The error a door raises for an ``OSError`` of reading the video source ``source``
    (:func:`source_error`'s words): a file that is not there is :class:`FileMissing`, ``video source
    'x' not found``, as `watch` says it and every command its missing file (it was FFmpeg's "cannot
    open it: No such file or directory", ``bad_request``)."""
    if not is_live(source) and not os.path.lexists(str(source)):
        return FileMissing(f"video source {str(source)!r} not found")
    return InvalidInput(source_error(exc, source))


class VideoSource:
    """Iterate over the frames of ``spec`` (a path, a stream URL or a webcam index).

    ``live`` (default: guessed from ``spec``) turns on the background reader with frame dropping
    and reconnection; ``realtime`` paces the frames at the source's frame rate: that reader's, or
    a file's (to replay a recording as if it were a camera: a frame is given at its time, and the
    frames whose time passed while the caller processed earlier ones are dropped and counted, as a
    camera's are; the file still ends at its end). ``max_reconnects`` None retries forever; backoff doubles from
    ``backoff_start`` up to ``backoff_max`` seconds. ``start`` (files only) seeks to that frame
    number: the first frame yielded has that index. A file that cannot be opened raises
    ``OSError`` when iterated; a live source logs the failure, keeps it in ``error`` and retries,
    except a webcam index that does not open the first time (no such camera): iterating it raises
    that ``OSError`` at once instead of retrying forever; an index above :data:`MAX_WEBCAM_INDEX`
    is :class:`InvalidInput` when the source is made. Any other failure of the live reader (not a
    decoding, network or camera error: a fault) ends the iteration with an ``OSError`` saying so,
    never as if the source had ended. An http(s) URL guessed live (``live``
    None) is opened first: a file served over HTTP (:func:`is_finite`) is then read as a file
    (``live`` becomes False: every frame, no reconnection at its end); a stream with no length
    stays live.
    """

    def __init__(
        self,
        spec: str | int | Path,
        *,
        live: bool | None = None,
        realtime: bool = False,
        buffer: int = 2,
        max_reconnects: int | None = None,
        backoff_start: float = 0.5,
        backoff_max: float = 30.0,
        start: int = 0,
    ) -> None:
        self.spec = spec
        self.live = is_live(spec) if live is None else live
        self._probe = live is None and str(spec).lower().startswith(HTTP_SCHEMES)
        check_webcam_index(spec)  # before any thread starts
        if start and (self.live or is_webcam(spec)):
            raise ValueError("start is for files only")
        self.start = start
        self.realtime = realtime
        self.max_reconnects = max_reconnects
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.stats = SourceStats()
        self.fps = 0.0
        self.frames: int | None = None  # a file's frame count when its container says (progress bars)
        self.error: Exception | None = None  # the live reader's last failure
        self._buffer: deque[Frame] = deque(maxlen=max(1, buffer))
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._finished = False
        self._thread: threading.Thread | None = None
        self._next_index = start
        self._first_index_of_run = 0
        self._time_offset = 0.0
        self._gave_up = False  # a webcam index that never opened, a reader that failed: the error is raised

    def __iter__(self) -> Iterator[Frame]:
        opened = self._open_http_file() if self._probe else None
        if opened is not None:
            self.live = False
        if not self.live:
            yield from self._paced(self._frames(opened)) if self.realtime else self._frames(opened)
            if self.stats.decoded == 0 and self.stats.corrupt:  # a text file named .jpg opens as an image
                raise OSError(f"no frame of {str(self.spec)!r} could be decoded ({self.stats.corrupt} corrupt)")
            return
        self._thread = threading.Thread(target=self._read_live, name=f"source-{self.spec}", daemon=True)
        self._thread.start()
        while True:
            with self._ready:
                while not self._buffer and not self._finished and not self._stop.is_set():
                    self._ready.wait(0.5)
                if not self._buffer:
                    if self._gave_up and self.error is not None:
                        raise self.error
                    return
                frame = self._buffer.popleft()
            yield frame

    def stop(self) -> None:
        """Stop reading without waiting: the iteration ends at its next frame, or at once when no
        frame is buffered (a live source reconnecting or opening); the background reader exits at
        its next frame or wait."""
        self._stop.set()
        with self._ready:
            self._ready.notify_all()

    def close(self) -> None:
        """Stop reading (the background reader exits at its next frame)."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _open_http_file(self) -> av.container.InputContainer | None:
        """The opened container of an http(s) URL that serves a file; None for a stream (it is
        closed again), or when it does not open (a live source retries)."""
        self._probe = False
        try:
            container = self._open()
        except OSError as exc:
            log.info("source %s did not open (%s): read as a live stream", self.spec, exc)
            return None
        if is_finite(container):
            return container
        container.close()
        return None

    def _paced(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        """A file's ``frames`` at its frame rate, as a camera shows them: each is held until its time
        from the first frame's, and one whose successor is already due when it is decoded (the
        caller still processed the frames before) is dropped and counted, as a live source's
        reader drops what processing cannot keep up with. Without a frame rate, no pacing; once
        :meth:`stop` is called, none either (the caller sees the next frame at once, and stops)."""
        started: float | None = None
        first = 0.0
        for frame in frames:
            if self.fps and not self._stop.is_set():
                if started is None:
                    started, first = time.monotonic(), frame.time
                late = time.monotonic() - (started + frame.time - first)
                if late >= 1.0 / self.fps:
                    self.stats.dropped += 1
                    continue
                if late < 0:
                    self._stop.wait(-late)
            yield frame

    # -- live reading ---------------------------------------------------------------------------
    def _read_live(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                produced = False
                try:
                    for frame in self._frames():
                        produced = True
                        self._push(frame, started)
                        if self._stop.is_set():
                            return
                except (av.error.FFmpegError, OSError, RuntimeError) as exc:
                    self.error = exc
                    if is_webcam(self.spec) and not produced and self._next_index == 0:
                        self._gave_up = True  # no camera at this index: it will not appear by waiting
                        return  # the error is raised to the caller, who says it (a log line said it first)
                    log.warning("source %s failed: %s", self.spec, exc)
                except Exception as exc:  # noqa: BLE001 - any other failure ends the run as an error
                    # (a cv2.error ended this thread, and the run as if the source had ended: exit 0)
                    log.warning("source %s failed: %r", self.spec, exc)
                    error = OSError(f"reading {str(self.spec)!r} failed: {type(exc).__name__}: {exc}")
                    error.__cause__ = exc
                    self.error, self._gave_up = error, True
                    return
                failures = 0 if produced else failures + 1
                if self.max_reconnects is not None and self.stats.reconnects >= self.max_reconnects:
                    return
                delay = min(self.backoff_max, self.backoff_start * 2 ** max(0, failures - 1))
                log.info("source %s ended; reconnecting in %.1fs", self.spec, delay)
                if self._stop.wait(delay):
                    return
                self.stats.reconnects += 1
        finally:
            with self._ready:
                self._finished = True
                self._ready.notify_all()

    def _push(self, frame: Frame, started: float) -> None:
        if self.realtime and self.fps > 0:
            wait = started + (frame.index - self._first_index_of_run) / self.fps - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
        with self._ready:
            if len(self._buffer) == self._buffer.maxlen:
                self.stats.dropped += 1
            self._buffer.append(frame)
            self._ready.notify()

    # -- decoding -------------------------------------------------------------------------------
    def _frames(self, opened: av.container.InputContainer | None = None) -> Iterator[Frame]:
        self._first_index_of_run = self._next_index
        reader = self._opencv_frames() if is_webcam(self.spec) else self._pyav_frames(opened)
        last_time = self._time_offset
        for seconds, image in reader:
            if image is None or image.ndim != 3 or image.size == 0:
                self.stats.corrupt += 1
                continue
            last_time = self._time_offset + seconds
            frame = Frame(self._next_index, last_time, image)
            self._next_index += 1
            self.stats.decoded += 1
            yield frame
        self._time_offset = last_time + (1.0 / self.fps if self.fps else 0.0)

    def _open(self) -> av.container.InputContainer:
        options = {"rtsp_transport": "tcp"} if str(self.spec).lower().startswith("rtsp") else {}
        try:
            return av.open(str(self.spec), options=options, timeout=(10.0, 10.0))
        except av.error.FFmpegError as exc:  # FFmpeg's reason, without its error number and the source again
            error = OSError(f"cannot open video source {str(self.spec)!r}: {exc.strerror or exc}")
            error.reason = f"cannot open it: {exc.strerror or exc}"  # type: ignore[attr-defined]  # source_error's
            raise error from exc

    def _pyav_frames(self, opened: av.container.InputContainer | None = None,
                     ) -> Iterator[tuple[float, np.ndarray | None]]:
        container = opened if opened is not None else self._open()
        with container:
            if not container.streams.video:
                raise OSError(f"no video stream in {str(self.spec)!r}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # FFmpeg's guess (av_guess_frame_rate) before the container's average: an AVI of 341
            # frames over 13.6 s (25 fps) declares an average of 50 (two packets per frame)
            rate = Fraction(stream.guessed_rate or stream.average_rate or 0)
            self.fps = float(rate)
            self.frames = int(stream.frames) if stream.frames and not self.live else None
            if self.frames and rate and stream.average_rate and stream.average_rate > rate:
                # that AVI's header counts its 682 packets, two per frame, as the average rate does
                self.frames = round(self.frames * rate / stream.average_rate)
            base = float(stream.time_base or 0.0)
            # AVI keeps no presentation times (this AVI's packed B-frames come out stamped out of
            # order): its frames are timed, and sought, by their count
            by_count = container.format.name == "avi" or not base
            count = corrupt = 0
            last = -1.0  # the last frame's time
            skip_before = self._seek(container, stream, rate) if self.start and not by_count else 0
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    self.stats.corrupt += 1
                    corrupt += 1
                    continue
                for frame in decoded:
                    if skip_before:  # decoding from the keyframe before ``start``
                        if frame.pts is not None and self._frame_number(frame.pts, stream, rate) < skip_before:
                            continue
                        count, skip_before = self.start, 0
                    elif count < self.start:  # timed by count: decoded from the start up to ``start``
                        count += 1
                        continue
                    seconds = count / (self.fps or 1.0) if by_count or frame.pts is None else frame.pts * base
                    count += 1
                    last = seconds
                    # as a player shows it: a phone's portrait video is stored sideways, with a rotation
                    yield seconds, display_upright(frame.to_ndarray(format="bgr24"), frame.rotation)
            if not self.live:  # read to its end (a reader that stopped early never gets here)
                start = 0.0 if by_count else float((stream.start_time or 0) * base)
                self._check_length(container, stream, rate, count + corrupt, last - start)

    def _check_length(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                      rate: Fraction, read: int, last: float) -> None:
        """A warning, and ``stats.expected``, when a file ended well before what its container states
        (a file cut short: 52 of 377 frames were read and the run ended as if complete, exit 0): its
        frame count (``read``: the frames read or corrupt), else its duration (``last``: the last
        frame's time from the start; a variable frame rate makes no count of it). A file that
        states neither is not checked; a count a frame or two off is no cut."""
        if self.frames:
            if read >= self.frames - max(2, self.frames // 50):
                return
            stated = self.frames
        else:
            duration = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                        else container.duration / av.time_base if container.duration else 0.0)
            step = 1.0 / float(rate) if rate else 0.0
            if duration <= 0 or last + step >= duration - max(0.5, duration / 50):
                return
            stated = round(duration * float(rate)) if rate else read
        self.stats.expected = stated
        log.warning("video %s ended after %d of the %d frames its container states: the file is cut short or "
                    "damaged", self.spec, read, stated)

    def _seek(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
              rate: Fraction) -> int:
        """Seek to the keyframe at or before frame ``start``; the frame number to skip up to."""
        if not rate or not stream.time_base:
            raise OSError(f"cannot seek {str(self.spec)!r}: no frame rate")
        target = (stream.start_time or 0) + int(self.start / (rate * stream.time_base))
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:  # not seekable: decode from the start and skip
            log.warning("cannot seek %s (%s); decoding from the start", self.spec, exc)
        return self.start

    @staticmethod
    def _frame_number(pts: int, stream: av.video.stream.VideoStream, rate: Fraction) -> int:
        return round((pts - (stream.start_time or 0)) * Fraction(stream.time_base or 0) * rate)

    def _opencv_frames(self) -> Iterator[tuple[float, np.ndarray | None]]:
        capture = _open_camera(int(str(self.spec)))
        try:
            if not capture.isOpened():
                raise OSError(f"cannot open camera {self.spec}")
            self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 30.0)
            count = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    return
                yield count / self.fps, image
                count += 1
        finally:
            capture.release()


def _open_camera(index: int) -> cv2.VideoCapture:
    """The webcam ``index`` opened by OpenCV, its log silent while it opens: on an index with no
    camera each backend it tries wrote its own lines ("[ WARN:0@4.078] ... can't open camera by
    index", an FFmpeg exception over five lines, "[ERROR:0@4.084] ... Camera index out of range")
    before the one error the caller says. OpenCV's log level is its previous one again once the
    camera is open (or not): the warnings of a running camera are written as before."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(index)
    finally:
        cv2.utils.logging.setLogLevel(previous)
