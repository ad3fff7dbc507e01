"""Test media made from the shared assets: ID cards printed from a photo, short selfie videos
(clip segments, a still moved on screen), encoded in memory."""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

CARD_SIZE = (856, 540)  # ID-1 proportions (85.6 x 54 mm) at 10 px/mm


def _guilloche(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b = rng.uniform(0.02, 0.05, 2)
    waves = np.sin(x * a + 6 * np.sin(y * b)) + np.sin(y * a * 0.7 + 5 * np.cos(x * b * 0.8))
    base = np.array(rng.integers(170, 230, 3), np.float32)
    pattern = base[None, None, :] + 14 * waves[..., None]
    return np.clip(pattern, 0, 255).astype(np.uint8)


def render_card(photo: Path | np.ndarray, name: str, seed: int = 0, *, canvas: int = 1100,
                photo_crop: tuple[float, float, float, float] = (0.24, 0.16, 0.76, 0.86), quality: int = 80,
                with_photo: bool = True) -> bytes:
    """A JPEG of an ID card photographed on a table: background pattern, header, the photo (the
    ``photo_crop`` fractions of it) on the left, text fields, a faint ghost image, then a slight
    perspective, blur and JPEG compression."""
    rng = np.random.default_rng(seed)
    width, height = CARD_SIZE
    card = _guilloche(height, width, rng)
    cv2.rectangle(card, (0, 0), (width, 70), (120, 60, 20), -1)
    cv2.putText(card, "REPUBLIC OF ATLAS  IDENTITY CARD", (24, 48), cv2.FONT_HERSHEY_DUPLEX, 1.0, (255, 255, 255), 2)
    image = cv2.imread(str(photo)) if isinstance(photo, Path) else photo
    h, w = image.shape[:2]
    x1, y1, x2, y2 = photo_crop
    portrait = image[int(y1 * h):int(y2 * h), int(x1 * w):int(x2 * w)]
    portrait = cv2.resize(portrait, (230, 290), interpolation=cv2.INTER_AREA)
    if with_photo:
        card[100:390, 30:260] = portrait
        ghost = cv2.cvtColor(cv2.resize(portrait, (70, 88)), cv2.COLOR_BGR2GRAY)
        region = card[400:488, 740:810].astype(np.float32)
        card[400:488, 740:810] = (0.75 * region + 0.25 * ghost[..., None]).astype(np.uint8)
    for row, (label, value) in enumerate([("SURNAME", name.split("_")[-1].upper()),
                                          ("GIVEN NAMES", " ".join(name.split("_")[:-1]).upper() or "-"),
                                          ("DATE OF BIRTH", f"{rng.integers(1, 28):02d}.{rng.integers(1, 12):02d}."
                                                            f"{rng.integers(1940, 2000)}"),
                                          ("DOCUMENT NO", f"AT{rng.integers(10**7, 10**8)}")]):
        cv2.putText(card, label, (290, 120 + 70 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (90, 60, 40), 1)
        cv2.putText(card, value, (290, 148 + 70 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (20, 20, 20), 2)
    cv2.putText(card, "<<ATLAS<<" + name.upper()[:20] + "<" * 12, (24, 520), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                (30, 30, 30), 2)
    # On a table, seen slightly obliquely.
    out_w, out_h = canvas, int(canvas * 0.72)
    table = np.full((out_h, out_w, 3), rng.integers(60, 120, 3), np.uint8)
    margin_x, margin_y = (out_w - width) / 2, (out_h - height) / 2
    source = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    jitter = rng.uniform(-0.03, 0.03, (4, 2)) * [width, height]
    target = np.float32(source + [margin_x, margin_y] + jitter)
    matrix = cv2.getPerspectiveTransform(source, target)
    warped = cv2.warpPerspective(card, matrix, (out_w, out_h), borderMode=cv2.BORDER_TRANSPARENT, dst=table)
    blurred = cv2.GaussianBlur(warped, (0, 0), float(rng.uniform(0.6, 1.2)))
    ok, encoded = cv2.imencode(".jpg", blurred, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return encoded.tobytes()


def encode_mp4(frames: Sequence[np.ndarray], fps: float = 25.0, *, first_s: float = 0.0,
               ticks: int | None = None) -> bytes:
    """H.264 (or MPEG-4 where libx264 is missing) in an MP4, in memory; ``first_s``: the first
    frame's time (a clip cut from a longer recording); ``ticks``: frames stamped this many units of
    1/90000 s apart whatever ``fps`` says (a rate no camera has)."""
    buffer = io.BytesIO()
    height, width = frames[0].shape[:2]
    with av.open(buffer, mode="w", format="mp4") as container:
        try:
            stream = container.add_stream("libx264", rate=round(fps))
        except (av.error.FFmpegError, ValueError):  # pragma: no cover - a build without x264
            stream = container.add_stream("mpeg4", rate=round(fps))
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        stamped = bool(first_s) or ticks is not None  # else the encoder's own timestamps, at round(fps)
        base = Fraction(1, 90000)
        if stamped:
            stream.time_base = stream.codec_context.time_base = base
        step = ticks if ticks is not None else round(90000 / fps)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:stream.height, :stream.width]),
                                               format="bgr24")
            if stamped:
                frame.pts, frame.time_base = round(first_s * 90000) + index * step, base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def clip(video: Path, start: int, stop: int, crop: tuple[float, float, float, float] = (0, 0, 1, 1),
         max_side: int = 640) -> list[np.ndarray]:
    """Frames ``start``..``stop`` (exclusive) of a video file, cropped to fractions of the frame
    and reduced to ``max_side`` (a phone's selfie stream)."""
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    for _ in range(stop - start):
        ok, frame = capture.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        x1, y1, x2, y2 = crop
        frame = frame[int(y1 * h):int(y2 * h), int(x1 * w):int(x2 * w)]
        scale = max_side / max(frame.shape[:2])
        if scale < 1:
            frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frames.append(np.ascontiguousarray(frame))
    capture.release()
    return frames


def moved_still(photo: np.ndarray, seconds: float = 3.0, fps: float = 25.0, size: tuple[int, int] = (640, 480),
                seed: int = 0) -> list[np.ndarray]:
    """A still photo held up and moved before the camera: rigid shifts, a slow zoom and a small
    rotation on a plain background (no blink, no turn of the head)."""
    rng = np.random.default_rng(seed)
    width, height = size
    frames = []
    count = int(seconds * fps)
    phase = rng.uniform(0, 2 * np.pi, 3)
    fit = 0.85 * min(width / photo.shape[1], height / photo.shape[0])
    for i in range(count):
        t = i / fps
        scale = fit * (1.0 + 0.12 * np.sin(0.9 * t + phase[0]))
        angle = 6 * np.sin(1.3 * t + phase[1])
        dx, dy = 25 * np.sin(1.7 * t + phase[2]), 15 * np.cos(1.1 * t)
        matrix = cv2.getRotationMatrix2D((photo.shape[1] / 2, photo.shape[0] / 2), angle, scale)
        matrix[:, 2] += [width / 2 - photo.shape[1] / 2 + dx, height / 2 - photo.shape[0] / 2 + dy]
        frame = cv2.warpAffine(photo, matrix, (width, height), borderValue=(70, 70, 70))
        noise = rng.normal(0, 2.0, frame.shape)
        frames.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
    return frames
