"""The selfie: a short video (decoded in memory, never written to disk) or a series of images, as
timed frames; and the fingerprints that recognise a submission seen before (replay)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import av
import cv2
import numpy as np

from faceatlas.apps.kyc.config import KycConfig
from faceatlas.engine.image import decode_image, decoded_pixels, display_upright
from faceatlas.errors import EmptyImage, ImageTooLarge, InvalidArgument, InvalidImage, InvalidInput

HASH_SIDE = 16  # 16 x 16 = 256 bits per frame
MAX_VIDEO_PIXELS = 4096 * 2160  # a 4K phone video at most
MIN_FPS, MAX_FPS = 1.0, 120.0  # the rates frames given as images may have
DECODE_FPS_4K = 30  # a video decodes at most max_video_s of 4K at 30 fps in pixels (1080p at 120 fps)
FLAT = 0  # the hash of a frame without a picture (see frame_hash): never compared
FLAT_STD = 1.0  # grey levels: a thumbnail whose brightness varies less than this shows nothing
MAX_SIDE = 640  # larger frames are reduced: Face Mesh and the detector work at ≤ 640 anyway; a selfie face stays large


@dataclass(frozen=True)
class Selfie:
    """Frames (BGR) with their times in seconds, and the fingerprints of the submission."""

    frames: list[np.ndarray]
    times: list[float]
    digest: str  # sha256 of the bytes as submitted
    hashes: list[int]  # 256-bit difference hash per frame

    @property
    def duration(self) -> float:
        return self.times[-1] - self.times[0] if self.times else 0.0


def _reduce(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    scale = MAX_SIDE / max(height, width)
    if scale >= 1:
        return frame
    # at least 1 pixel: a 40000x2 frame was resized to 640x0 (an OpenCV error, a 500)
    return cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def frame_hash(frame: np.ndarray) -> int:
    """256-bit difference hash of the whole frame (a re-encoded or rescaled copy of the same video
    keeps it); :data:`FLAT` for a frame without a picture (its 16 x 17 thumbnail's brightness varies
    by less than ``FLAT_STD``: a covered or black camera, a grey screen), whose bits would be noise."""
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (HASH_SIDE + 1, HASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.int16)
    if float(small.std()) < FLAT_STD:
        return FLAT
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def informative(value: int, bits: int) -> bool:
    """Whether a frame hash tells pictures apart at ``bits`` (the replay check's distance): not within
    ``bits`` of all zeros (:data:`FLAT`, or a picture that changes only from top to bottom) nor of all
    ones (one that only brightens from left to right). Every flat frame had the hash 0, so a customer
    whose camera was black was refused as a replay of any earlier black camera, someone else's."""
    return bits < value.bit_count() < HASH_SIDE * HASH_SIDE - bits


def decode_video(data: bytes, config: KycConfig) -> Selfie:
    """Frames of an encoded video at ≤ ``sample_fps`` over its first ``max_video_s`` seconds (from
    its first frame's time, which need not be 0), each upright as a player shows it (its display
    rotation applied: :func:`~faceatlas.engine.image.display_upright`). What decoding costs is
    bounded: frames of at most ``MAX_VIDEO_PIXELS``, and at most ``max_video_s`` of 4K at
    ``DECODE_FPS_4K`` in pixels decoded (a small file of a flat picture at thousands of frames a
    second held a worker for minutes): :class:`ImageTooLarge` beyond either."""
    if not data:
        raise EmptyImage("the selfie video is empty")
    frames: list[np.ndarray] = []
    times: list[float] = []
    next_t, start = 0.0, None
    budget, decoded, count = int(MAX_VIDEO_PIXELS * DECODE_FPS_4K * config.max_video_s), 0, 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise InvalidImage("the selfie has no video stream")
            stream = container.streams.video[0]
            if (stream.codec_context.width or 0) * (stream.codec_context.height or 0) > MAX_VIDEO_PIXELS:
                raise ImageTooLarge(f"selfie frames of {stream.codec_context.width}x{stream.codec_context.height} "
                                    f"are larger than {MAX_VIDEO_PIXELS:,} pixels")
            for frame in container.decode(stream):
                count += 1
                decoded += frame.width * frame.height
                if decoded > budget:
                    raise ImageTooLarge(
                        f"the selfie video's first {config.max_video_s:g} s hold more frames than FaceAtlas decodes "
                        f"({count:,} of {frame.width}x{frame.height} so far: over {DECODE_FPS_4K} a second at 4K, "
                        f"{DECODE_FPS_4K * 4} at 1080p); send it at the camera's usual rate")
                at = float(frame.time) if frame.time is not None else (count - 1) / 25.0
                start = at if start is None else start
                t = at - start  # a clip cut from a longer recording starts later than 0
                if t > config.max_video_s:
                    break
                if t + 1e-6 < next_t:
                    continue
                next_t = t + 1.0 / config.sample_fps
                frames.append(_reduce(display_upright(frame.to_ndarray(format="bgr24"), frame.rotation)))
                times.append(t)
    except av.error.FFmpegError as exc:  # FFmpeg's own words, not its errno and '<none>' file name
        reason = (getattr(exc, "strerror", None) or str(exc)).rstrip(".")
        raise InvalidImage(f"the selfie video does not decode ({reason[:80].lower()}): send an MP4, WebM or "
                           "MOV video, or the frames as images") from exc
    if not frames:
        raise InvalidImage("the selfie video has no frames")
    return Selfie(frames, times, hashlib.sha256(data).hexdigest(),
                  [frame_hash(f) for f in frames])


def frames_used(images: Sequence[bytes], config: KycConfig, fps: float | None = None) -> tuple[int, float]:
    """How many of ``images`` a selfie given as frames uses (its first ``max_video_s`` seconds)
    and their rate: ``fps``, default ``frames_fps``."""
    if not images:
        raise InvalidInput("no selfie frames were given")
    rate = config.frames_fps if fps is None else fps
    if not MIN_FPS <= rate <= MAX_FPS:
        raise InvalidArgument(f"the frames' rate must be between {MIN_FPS:g} and {MAX_FPS:g} per second")
    return min(len(images), int(config.max_video_s * rate) + 1), rate


def frames_pixels(images: Sequence[bytes], config: KycConfig, fps: float | None = None, *,
                  max_pixels: int | None = None) -> Iterator[int]:
    """What decoding each used frame costs, in pixels (see :func:`decode_frames`), from its header
    alone; a frame above ``max_pixels`` (default the engine's) is :class:`ImageTooLarge`."""
    count, _ = frames_used(images, config, fps)
    for data in images[:count]:
        yield decoded_pixels(data, max_pixels=max_pixels, min_side=MAX_SIDE)


def decode_frames(images: Sequence[bytes], config: KycConfig, fps: float | None = None, *,
                  max_pixels: int | None = None) -> Selfie:
    """A selfie given as encoded images in order, ``fps`` (default ``frames_fps``) apart. Each is
    decoded reduced to about ``MAX_SIDE`` (a JPEG in its codec), refused from its header above
    ``max_pixels`` (default the engine's)."""
    count, rate = frames_used(images, config, fps)
    frames = [_reduce(decode_image(data, max_pixels=max_pixels, min_side=MAX_SIDE)[0]) for data in images[:count]]
    digest = hashlib.sha256()
    for data in images[:count]:
        digest.update(hashlib.sha256(data).digest())
    return Selfie(frames, [i / rate for i in range(count)], digest.hexdigest(), [frame_hash(f) for f in frames])


def replayed_share(hashes: Sequence[int], earlier: Sequence[int], bits: int) -> float:
    """Share of ``hashes`` within ``bits`` (Hamming) of some hash in ``earlier``, counting only
    :func:`informative` hashes on either side: flat frames are neither compared nor counted (black
    frames added to a replayed video do not dilute its share)."""
    hashes = [value for value in hashes if informative(value, bits)]
    earlier = [other for other in earlier if informative(other, bits)]
    if not hashes or not earlier:
        return 0.0
    hits = sum(any((value ^ other).bit_count() <= bits for other in earlier) for value in hashes)
    return hits / len(hashes)
