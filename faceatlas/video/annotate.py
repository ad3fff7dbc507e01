"""What a person looks at: annotated frames (boxes, names, line and zone counts), face blurring
for privacy, and the writer of the annotated video and snapshots."""

from __future__ import annotations

import contextlib
import errno
import logging
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
import supervision as sv

from faceatlas.errors import FaceAtlasError, InvalidArgument, InvalidInput
from faceatlas.video.zones import LineCounter, ZoneCounter

log = logging.getLogger(__name__)


def blur_faces(image: np.ndarray, faces: sv.Detections, keep: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``image`` with every face blurred except those where ``keep`` is True."""
    if len(faces) == 0:
        return image.copy()
    hidden = faces if keep is None else cast(sv.Detections, faces[~keep])
    return sv.BlurAnnotator(kernel_size=max(15, image.shape[1] // 40)).annotate(image.copy(), hidden)


def blur_plates(image: np.ndarray, vehicles: sv.Detections, share: float = 0.4) -> np.ndarray:
    """``image`` (modified in place) with the lower ``share`` of every vehicle box blurred: where a
    plate is, seen from the front, back or above at an angle (there is no plate detector)."""
    if len(vehicles) == 0:
        return image
    boxes = vehicles.xyxy.copy()
    boxes[:, 1] = boxes[:, 3] - (boxes[:, 3] - boxes[:, 1]) * share
    lower = sv.Detections(xyxy=boxes)
    return sv.BlurAnnotator(kernel_size=max(15, image.shape[1] // 40)).annotate(image, lower)


class FrameAnnotator:
    """Draws tracked faces and persons with labels, counting lines and zones onto a frame."""

    def __init__(self) -> None:
        self.face_boxes = sv.BoxAnnotator(color=sv.Color.GREEN, thickness=2)
        self.person_boxes = sv.BoxAnnotator(color=sv.Color.BLUE, thickness=1)
        self.face_labels = sv.LabelAnnotator(color=sv.Color.GREEN, text_scale=0.5, text_color=sv.Color.BLACK)
        self.person_labels = sv.LabelAnnotator(color=sv.Color.BLUE, text_scale=0.4, text_position=sv.Position.TOP_LEFT)
        self.line = sv.LineZoneAnnotator(thickness=2, text_scale=0.6)

    def draw(
        self,
        image: np.ndarray,
        faces: sv.Detections,
        face_labels: Sequence[str],
        persons: sv.Detections,
        person_labels: Sequence[str],
        lines: Sequence[LineCounter],
        zones: Sequence[ZoneCounter],
    ) -> np.ndarray:
        """``image`` (modified in place) with everything drawn on it."""
        for zone in zones:
            text = f"{zone.spec.name}: {zone.count}" + (f" ({zone.level})" if zone.level else "")
            image = sv.draw_polygon(image, zone.zone.polygon, sv.Color.YELLOW, thickness=2)
            anchor = zone.zone.polygon.min(axis=0)
            cv2.putText(image, text, (int(anchor[0]) + 4, int(anchor[1]) + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                        (0, 255, 255), 2, cv2.LINE_AA)
        for line in lines:
            image = self.line.annotate(image, line.zone)
        if len(persons):
            image = self.person_boxes.annotate(image, persons)
            image = self.person_labels.annotate(image, persons, list(person_labels))
        if len(faces):
            image = self.face_boxes.annotate(image, faces)
            image = self.face_labels.annotate(image, faces, list(face_labels))
        return image


VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi")  # the containers OpenCV writes MPEG-4 Part 2 ('mp4v') into


def check_video_path(path: str | Path) -> Path:
    """``path`` when its suffix names a video file :class:`VideoWriter` writes; else
    :class:`InvalidArgument` before any frame is read (OpenCV wrote nothing for ``out.txt`` and
    said so only in a log line, and the run ended 0). A name that is not valid UTF-8 (bytes the
    file system gave as surrogate escapes) is refused too: OpenCV's writer crashed the process on it."""
    if str(path) == "-":
        raise InvalidArgument("a video cannot be written to standard output ('-'): an MP4 is finished by "
                              "seeking back into it; give a file such as out.mp4")
    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{str(path)!r}: a video's file name must be valid UTF-8 (OpenCV cannot write "
                              "this one); give another name") from None
    if path.is_dir():  # OpenCV said only "could not open the video for writing", at the first frame
        raise InvalidArgument(f"{path} is a folder: give a video file to write, such as {path / 'out.mp4'}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InvalidArgument(f"{path}: cannot write a video with suffix {path.suffix or '(none)'!r}; "
                              f"use {', '.join(VIDEO_SUFFIXES)}")
    return path


class VideoWriter:
    """An MP4 file written frame by frame (opened at the first frame's size; a frame of another
    size, a stream that changed resolution, is scaled to it: OpenCV dropped it without a word).

    Written through PyAV (FFmpeg's MPEG-4 Part 2 encoder, 'mp4v', with OpenCV's settings): a write
    that fails, at the first frame or later (disk full, a file size limit, the file system gone),
    raises :class:`OSError` naming the file, and so does :meth:`close` when the file cannot be
    finished. OpenCV's writer only logged "Failed to write frame" and the run ended 0 with a
    truncated file that plays nowhere. After a failed write the writer is done: the file is closed
    (what it holds is not a playable video), :meth:`close` raises nothing more, and :meth:`discard`
    removes it."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = check_video_path(path)
        self.fps = fps if fps and math.isfinite(fps) and fps > 0 else 25.0
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._size: tuple[int, int] = (0, 0)
        self._failed = False
        self._made = False  # the file was made (opened for writing) by this writer
        self.frames = 0  # frames written
        self.resized = 0  # frames of another size than the first, scaled to it

    def write(self, image: np.ndarray) -> None:
        if self._failed:
            raise OSError(errno.EIO, "a write failed before: the video was abandoned", str(self.path))
        if image.ndim == 2 or image.shape[2] != 3:  # grey or BGRA: the encoder takes BGR
            grey = image.ndim == 2 or image.shape[2] == 1
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if grey else cv2.COLOR_BGRA2BGR)
        height, width = image.shape[:2]
        if self._container is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open(width, height)
        elif (width, height) != self._size:
            if not self.resized:
                log.warning("%s: the source's frames changed from %dx%d to %dx%d: scaled to the first size in "
                            "the recording (lines and zones are in the first size's pixels)", self.path,
                            *self._size, width, height)
            self.resized += 1
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        assert self._container is not None and self._stream is not None
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = self.frames
        try:
            self._container.mux(self._stream.encode(frame))
        except (av.FFmpegError, OSError) as exc:
            self._abandon()
            raise self._failure(exc) from None
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file; :class:`OSError` when that cannot be written."""
        if self._container is None:
            return
        assert self._stream is not None
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        except (av.FFmpegError, OSError) as exc:
            self._abandon()
            raise self._failure(exc) from None
        self._container = self._stream = None

    @property
    def failed(self) -> bool:
        """Whether a write or the close failed: the file is cut short, a video that plays nowhere."""
        return self._failed

    def discard(self) -> bool:
        """Close the file unfinished and remove it (after a failure: what it holds plays nowhere);
        True when there was one to remove. A file this writer never opened is left alone."""
        self._abandon()
        if not self._made:
            return False
        self._made = False
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("%s: the partial video could not be removed (%s)", self.path, exc)
            return False
        return True

    def _open(self, width: int, height: int) -> None:
        try:
            container = av.open(str(self.path), "w")
        except (av.FFmpegError, OSError) as exc:
            raise self._failure(exc, "could not open the video for writing") from None
        self._made = True
        try:
            stream = container.add_stream("mpeg4", rate=_frame_rate(self.fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # OpenCV's settings for 'mp4v': a bit rate out of reach, quality bounded by qmin, a key frame each 12
            stream.bit_rate = int(min(1.5 * self.fps * width * height, 2**31 - 1))
            stream.codec_context.qmin = 3
            stream.codec_context.gop_size = 12
            stream.codec_context.open()  # a size or rate the encoder refuses fails here, not at a frame
        except (av.FFmpegError, OSError) as exc:
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()
            raise self._failure(exc, "could not open the video for writing") from None
        self._container, self._stream, self._size = container, stream, (width, height)

    def _abandon(self) -> None:
        """Close the file after a failure, without another word (finishing it fails as the write did)."""
        self._failed = True
        container, self._container, self._stream = self._container, None, None
        if container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()

    def _failure(self, exc: Exception, what: str = "") -> OSError:
        """``exc`` as an :class:`OSError` of this file: its errno and reason, the path as the file name."""
        number = getattr(exc, "errno", None)
        reason = getattr(exc, "strerror", None) or str(exc)
        if what:
            reason = f"{what} ({reason})"
        return OSError(number if isinstance(number, int) else errno.EIO, reason, str(self.path))


def _frame_rate(fps: float) -> Fraction:
    """``fps`` as a fraction MPEG-4 Part 2 takes: NTSC's 30000/1001 as that (not a float's
    approximation), and a time base of at most 65535 ticks a second (the encoder refuses 120000/1001)."""
    for denominator in (1001, 100, 10, 1):
        rate = Fraction(fps).limit_denominator(denominator)
        if rate.numerator <= 65535 and rate > 0:
            return rate
    return Fraction(min(max(round(fps), 1), 65535))


def failure_reason(exc: OSError) -> str:
    """An :class:`OSError` of a file as ``path: reason`` (``[Errno 28] No space left on device: 'a.mp4'``
    as ``a.mp4: no space left on device``)."""
    return f"{exc.filename}: {exc.strerror.lower()}" if exc.strerror and exc.filename else str(exc)


def output_video_failed(exc: OSError, camera: str | None = None) -> InvalidInput:
    """The error for an output video that could not be written (it did not open, the disk is full):
    it names the output, not the source, and the camera when there are several."""
    where = f"camera {camera}: " if camera else ""
    return InvalidInput(f"{where}cannot write the output video: {failure_reason(exc)}")


PARTIAL_OUTPUT_REMOVED = "the partial output was removed"


def close_output_video(video: VideoWriter | None) -> tuple[OSError | None, bool]:
    """Close the output ``video`` of a run (`drive`, `ar`) that ended, well or not: the error of
    finishing it (None when it closed) and whether it was removed. A video whose write or close
    failed (a full disk, a file size limit) is cut short and plays nowhere: it is removed. One that
    closed is kept, a run stopped by Ctrl-C included (a valid video of the frames done)."""
    if video is None:
        return None, False
    unfinished: OSError | None = None
    try:
        video.close()
    except OSError as exc:
        unfinished = exc
    return unfinished, video.failed and video.discard()


def noting_removal(error: FaceAtlasError, removed: bool) -> FaceAtlasError:
    """``error`` (what ended a run) saying, when ``removed``, that the partial output video was removed."""
    if removed and error.args and PARTIAL_OUTPUT_REMOVED not in str(error):
        error.args = (f"{error.args[0]} ({PARTIAL_OUTPUT_REMOVED})", *error.args[1:])
    return error
