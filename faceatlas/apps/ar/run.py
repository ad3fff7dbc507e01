"""The AR use cases: effects on a video (file, webcam, stream) and on one image."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from faceatlas.apps.ar.config import ArConfig
from faceatlas.apps.ar.effects import Effect, make_effects
from faceatlas.apps.ar.tracking import ArFace, FaceTracker
from faceatlas.apps.drive import MEDIAPIPE_MAX_SIDE
from faceatlas.engine import ImageInput, load_image
from faceatlas.errors import FaceAtlasError, ImageTooLarge, InvalidArgument
from faceatlas.video import (
    Frame,
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

IMAGE_FORMATS = {"png": ".png", "jpeg": ".jpg"}
MAX_EFFECTS = 8  # effects in one apply_effects call (the API's `effect` list): each costs a pass over the image


class ArSession:
    """Face tracking (filtered landmarks, pose) and a chain of effects over the frames of one stream.

    ``effects`` are names of :data:`~faceatlas.apps.ar.effects.EFFECTS` or :class:`Effect` objects;
    one name alone (``"hat"``) is that one effect."""

    def __init__(self, effects: str | Sequence[str | Effect], config: ArConfig | None = None, *,
                 smooth: bool = True) -> None:
        effects = one_or_more(effects)
        names = [e for e in effects if isinstance(e, str)]
        made = iter(make_effects(names))
        self.effects: list[Effect] = [next(made) if isinstance(e, str) else e for e in effects]
        self.tracker = FaceTracker(config or ArConfig(), smooth=smooth)

    def process(self, frame: np.ndarray, t: float) -> tuple[np.ndarray, list[ArFace]]:
        """``frame`` (BGR) at ``t`` seconds with every effect applied (a copy), and its faces. A frame
        of more than ``MEDIAPIPE_MAX_SIDE`` pixels a side is :class:`ImageTooLarge` (MediaPipe's
        segmenter and mesh abort the whole process on it: a 157-byte 40000 x 2 PNG stopped the server)."""
        height, width = frame.shape[:2]
        if max(height, width) > MEDIAPIPE_MAX_SIDE:
            raise ImageTooLarge(f"AR effects take images of at most {MEDIAPIPE_MAX_SIDE:,} pixels a side "
                                f"(MediaPipe's limit), not {width} x {height}")
        faces = self.tracker.process(frame, t)
        out = frame.copy()
        for effect in self.effects:
            out = effect.apply(out, faces)
        return out, faces

    def close(self) -> None:
        self.tracker.close()
        for effect in self.effects:
            close = getattr(effect, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> ArSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def one_or_more(effects: str | Sequence[str | Effect]) -> list[str | Effect]:
    """``effects`` as a list; one name alone is that effect (a str is a sequence too: ``"hat"`` was
    the effects 'h', 'a', 't')."""
    return [effects] if isinstance(effects, str) else list(effects)


def apply_effects(image: ImageInput, effects: str | Sequence[str], image_format: str = "jpeg",
                  max_pixels: int | None = None) -> tuple[bytes, int]:
    """``image`` (bytes, path or array) with ``effects`` (names, or one name) applied, encoded as
    ``png`` or ``jpeg``, and the number of faces found. At most :data:`MAX_EFFECTS` effects (else
    ``InvalidArgument``)."""
    effects = [effects] if isinstance(effects, str) else list(effects)  # 'hat' was 'h', 'a', 't'
    if len(effects) > MAX_EFFECTS:
        raise InvalidArgument(f"at most {MAX_EFFECTS} effects in one call, not {len(effects)}")
    if image_format not in IMAGE_FORMATS:
        raise InvalidArgument(f"image format must be one of {', '.join(IMAGE_FORMATS)}")
    frame = load_image(image, max_pixels=max_pixels)
    with ArSession(effects, smooth=False) as session:
        out, faces = session.process(frame, 0.0)
    ok, encoded = cv2.imencode(IMAGE_FORMATS[image_format], out)
    if not ok:  # pragma: no cover  # OpenCV encodes any BGR uint8 image
        raise InvalidArgument("the image could not be encoded")
    return encoded.tobytes(), len(faces)


def run_ar(source: str | int | Path, effects: str | Sequence[str | Effect], *, output: Path | None = None,
           max_frames: int | None = None, config: ArConfig | None = None,
           on_frame: Callable[[int, int | None], None] | None = None) -> dict[str, float | int]:
    """Apply ``effects`` (names or :class:`Effect` objects, e.g. a PNG :class:`Sticker`, or one name) to every
    frame of ``source`` (video file, webcam index or stream URL), writing ``output`` (mp4) when
    given; ``on_frame(done, total)`` after each frame (total is None for live sources). Returns
    frames, faces seen (most in one frame) and processing fps, and ``"interrupted": True`` when
    Ctrl-C stopped a file before its end (``output`` is kept, closed: a valid video of the frames
    done); Ctrl-C is how a live source ends. A source that cannot be opened or
    read is :class:`InvalidInput`, and so is an ``output`` that cannot be written (naming it, before
    the source is opened, or when it fails later: the file, cut short, is then removed and the
    message says so); ``max_frames`` below 1, or an ``output`` that is
    the source file (links resolved), is :class:`InvalidArgument`. The folders made for ``output``
    are removed again when the run fails, those left empty."""
    if max_frames is not None and max_frames < 1:
        raise InvalidArgument(f"max_frames stops after that many frames, 1 or more, not {max_frames}")
    session = ArSession(effects, config)  # unknown effects fail before the source is opened
    made: list[Path] = []  # the folders made for the output: removed again (the empty ones) if the run fails
    try:
        if output is not None:
            check_video_path(output)
            check_outputs(str(source), output=output)
            prepare_output_file(output, "output", made=made)  # it failed at the first frame, as a generic error
        return _apply(session, source, output, max_frames, on_frame)
    except BaseException:
        remove_made_folders(made)
        raise


def _apply(session: ArSession, source: str | int | Path, output: Path | None, max_frames: int | None,
           on_frame: Callable[[int, int | None], None] | None) -> dict[str, float | int]:
    """:func:`run_ar` once ``output`` is checked and its folder made."""
    video = VideoSource(source)
    writer: VideoWriter | None = None
    frames, most_faces, began = 0, 0, time.perf_counter()
    interrupted = False
    failure: FaceAtlasError | None = None  # what ended the run: raised once the video is closed
    try:
        for frame in _frames(video, source):
            if max_frames is not None and frames >= max_frames:
                break
            if writer is None and output is not None:
                writer = VideoWriter(output, video.fps or 25.0)
            t = frame.index / video.fps if (video.fps and not video.live) else time.monotonic()
            out, faces = session.process(frame.image, t)
            if writer is not None:
                try:
                    writer.write(out)
                except OSError as exc:  # it did not open, the disk is full: the output, not the source
                    raise output_video_failed(exc) from exc
            frames += 1
            most_faces = max(most_faces, len(faces))
            if on_frame is not None:
                total = getattr(video, "frames", None)
                on_frame(frames, min(total, max_frames) if total and max_frames else total or max_frames)
    except KeyboardInterrupt:
        interrupted = not video.live
    except FaceAtlasError as exc:
        failure = exc
    finally:  # a close that fails is raised below, unless another error ended the run already
        with interrupts_held("closing the video"):  # a second Ctrl-C lost it and the summary
            video.close()
            session.close()
            unfinished, removed = close_output_video(writer)  # one cut short is removed: it plays nowhere
    if failure is None and unfinished is not None:
        failure = output_video_failed(unfinished)
        failure.__cause__ = unfinished
    if failure is not None:
        raise noting_removal(failure, removed)
    elapsed = time.perf_counter() - began
    summary: dict[str, float | int] = {"frames": frames, "most_faces": most_faces,
                                       "fps": round(frames / elapsed, 1) if elapsed else 0.0}
    if interrupted:
        summary["interrupted"] = True
    return summary


def _frames(video: VideoSource, source: str | int | Path) -> Iterator[Frame]:
    """The frames of ``video``; a source that cannot be opened or read is :class:`InvalidInput`."""
    try:
        yield from video
    except OSError as exc:
        raise source_failure(exc, source) from exc
