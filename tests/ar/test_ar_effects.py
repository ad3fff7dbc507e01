"""Each effect changes pixels only where it should, on a real 720p photo (Face Mesh landmarks)."""

from __future__ import annotations

import resource
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceatlas.apps.ar import (
    ArConfig,
    ArFace,
    Background,
    FaceTracker,
    Smooth,
    Sticker,
    StickerArt,
    Warp,
    apply_effects,
    make_effects,
    run_ar,
)
from faceatlas.errors import ImageTooLarge, InvalidArgument, InvalidImage, UnknownEffect


@pytest.fixture(scope="module")
def scene(examples) -> tuple[np.ndarray, ArFace]:
    image = cv2.imread(str(examples / "examples" / "obama-720p.jpg"))
    with FaceTracker(ArConfig(max_faces=1), smooth=False) as tracker:
        faces = tracker.process(image, 0.0)
    assert len(faces) == 1
    return image, faces[0]


def _changed(before: np.ndarray, after: np.ndarray, tolerance: int = 0) -> np.ndarray:
    return np.abs(after.astype(np.int16) - before).max(axis=2) > tolerance


def _polygon_mask(shape: tuple[int, ...], points: np.ndarray, grow: int = 0) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    if grow > 0:
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    elif grow < 0:
        mask = cv2.erode(mask, np.ones((-2 * grow + 1, -2 * grow + 1), np.uint8))
    return mask.astype(bool)


def test_glasses_sit_on_the_eyes_and_nowhere_else(scene):
    image, face = scene
    out = Sticker("glasses").apply(image.copy(), [face])
    changed = _changed(image, out)
    eyes = face.landmarks[[33, 263]]
    ys, xs = np.nonzero(changed)
    assert len(xs) > 2000
    # everything drawn lies on the band through the eyes, within the face's width
    span = float(np.linalg.norm(eyes[0] - eyes[1]))
    assert xs.min() > eyes[:, 0].min() - 0.5 * span and xs.max() < eyes[:, 0].max() + 0.5 * span
    assert ys.min() > eyes[:, 1].mean() - 0.5 * span and ys.max() < eyes[:, 1].mean() + 0.5 * span
    # both eyes are covered, the mouth is not
    for eye in eyes:
        assert changed[int(eye[1]), int(eye[0]) + (12 if eye[0] < face.landmarks[1][0] else -12)]
    assert not changed[int(face.landmarks[13][1]), int(face.landmarks[13][0])]


def test_a_turned_head_hides_the_far_temple(scene):
    image, face = scene
    turned = ArFace(face.landmarks, face.raw, type(face.pose)(35.0, 0.0, 0.0))  # nose to the image's right
    straight = _changed(image, Sticker("glasses").apply(image.copy(), [face]))
    hidden = _changed(image, Sticker("glasses").apply(image.copy(), [turned]))
    outside = ~_polygon_mask(image.shape, face.landmarks, grow=3)
    right = np.zeros_like(outside)
    right[:, int(face.landmarks[1][0]):] = True
    assert (straight & outside & right).sum() > 50  # the right temple arm sticks out of the face
    assert (hidden & outside & right).sum() < 0.1 * (straight & outside & right).sum()
    assert (hidden & outside & ~right).sum() > 0  # the near one stays


def test_smoothing_stays_on_the_skin(scene):
    image, face = scene
    out = Smooth().apply(image.copy(), [face])
    changed = _changed(image, out, tolerance=1)
    hull = _polygon_mask(image.shape, face.landmarks, grow=2)
    assert changed.sum() > 5000
    assert not (changed & ~hull).any()
    for eye in ((33, 133, 159, 145), (263, 362, 386, 374)):
        assert not (changed & _polygon_mask(image.shape, face.landmarks[list(eye)])).any()
    # it smooths: less high-frequency energy on the cheeks
    inside = _polygon_mask(image.shape, face.landmarks, grow=-40)
    lap_before = np.abs(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_32F))[inside].mean()
    lap_after = np.abs(cv2.Laplacian(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.CV_32F))[inside].mean()
    assert lap_after < 0.8 * lap_before


def test_big_eyes_and_slim_face_warp_only_the_face(scene):
    image, face = scene
    ring = _polygon_mask(image.shape, face.landmarks, grow=int(0.25 * face.size))
    for warp in (Warp(slim=0.0, big_eyes=0.3), Warp(slim=0.1, big_eyes=0.0)):
        changed = _changed(image, warp.apply(image.copy(), [face]), tolerance=8)
        assert changed.sum() > 500
        assert not (changed & ~ring).any()
    eyes_only = _changed(image, Warp(slim=0.0, big_eyes=0.3).apply(image.copy(), [face]), tolerance=8)
    mouth = _polygon_mask(image.shape, face.landmarks[[61, 291, 0, 17]], grow=5)
    assert not (eyes_only & mouth).any()


def test_background_replacement_and_blur_keep_the_person(scene):
    image, face = scene
    green, blur = Background(replace=(0, 255, 0)), Background()
    try:
        person = green.person(image)
        replaced = green.apply(image.copy(), [face])
        blurred = blur.apply(image.copy(), [face])
    finally:
        green.close()
        blur.close()
    assert person[int(face.landmarks[1][1]), int(face.landmarks[1][0])] > 0.99  # the nose is the person's
    background, body = person <= 0.0, person >= 1.0  # clipped: sure background, sure person
    assert background.mean() > 0.3 and body.mean() > 0.1
    assert (replaced[background] == (0, 255, 0)).all()
    assert not _changed(image, replaced)[body].any()
    assert not _changed(image, blurred)[body].any()
    edges = [np.abs(cv2.Laplacian(cv2.cvtColor(i, cv2.COLOR_BGR2GRAY), cv2.CV_32F))[background].mean()
             for i in (image, blurred)]
    assert edges[1] < 0.3 * edges[0]  # the background lost its detail


def test_unknown_effects_are_named():
    with pytest.raises(UnknownEffect, match="sparkles"):
        make_effects(["glasses", "sparkles"])
    with pytest.raises(UnknownEffect):
        Sticker("monocle")


def _bar_png(path, depth: type = np.uint8) -> None:
    """A 200x100 RGBA PNG: an opaque red bar (rows 40-59), fully transparent elsewhere."""
    top = np.iinfo(depth).max
    image = np.zeros((100, 200, 4), depth)
    image[40:60, :, 2] = top  # red (BGRA)
    image[40:60, :, 3] = top
    assert cv2.imwrite(str(path), image)


def test_a_png_sticker_is_drawn_where_its_alpha_is(scene, tmp_path):
    image, face = scene
    _bar_png(tmp_path / "bar.png")
    sticker = Sticker(StickerArt.from_png(tmp_path / "bar.png"))  # default: edge midpoints onto the eye corners
    assert sticker.art.landmarks == (33, 263) and sticker.art.anchors == ((0.0, 50.0), (200.0, 50.0))
    out = sticker.apply(image.copy(), [face])
    changed = _changed(image, out)
    bar = np.array([[0, 40, 1], [200, 40, 1], [200, 60, 1], [0, 60, 1]], np.float64) @ sticker.matrix(face).T
    drawn = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(drawn, np.round(bar).astype(np.int32), 1)
    inside = cv2.erode(drawn, np.ones((5, 5), np.uint8)).astype(bool)
    assert inside.sum() > 500
    assert not (changed & ~cv2.dilate(drawn, np.ones((5, 5), np.uint8)).astype(bool)).any()  # transparent: untouched
    assert (out[inside] == (0, 0, 255)).all()  # opaque: the bar's red
    # the bar runs from one outer eye corner to the other
    for corner in face.landmarks[[33, 263]]:
        assert np.linalg.norm(bar[[0, 3]].mean(axis=0) - corner) < 3 or np.linalg.norm(bar[[1, 2]].mean(axis=0)
                                                                                      - corner) < 3


def test_png_sticker_options_and_refusals(tmp_path):
    _bar_png(tmp_path / "deep.png", np.uint16)
    deep = StickerArt.from_png(tmp_path / "deep.png", anchors=((20, 50), (180, 50)), on="temples")
    assert deep.image.dtype == np.uint8 and deep.image.shape == (100, 200, 4) and deep.image[50, 0, 3] == 255
    assert deep.landmarks == (54, 284) and deep.anchors == ((20.0, 50.0), (180.0, 50.0))
    assert StickerArt.from_png(tmp_path / "deep.png", on=(234, 454)).landmarks == (234, 454)
    opaque = np.full((100, 200, 3), 128, np.uint8)
    assert cv2.imwrite(str(tmp_path / "opaque.png"), opaque)
    with pytest.raises(InvalidArgument, match="no alpha channel"):
        StickerArt.from_png(tmp_path / "opaque.png")
    with pytest.raises(InvalidArgument, match="alpha channel"):  # an array without alpha: refused, not a crash
        Sticker(StickerArt(opaque, ((0.0, 50.0), (200.0, 50.0)), (33, 263)))
    with pytest.raises(InvalidArgument, match="sits on one of"):
        StickerArt.from_png(tmp_path / "deep.png", on="nose")
    with pytest.raises(InvalidArgument, match="1 pixel apart"):
        StickerArt.from_png(tmp_path / "deep.png", anchors=((5, 5), (5, 5)))
    with pytest.raises(InvalidArgument, match="Face Mesh points"):
        StickerArt.from_png(tmp_path / "deep.png", on=(33, 478))
    # anchors are pixels of the image: one far outside it put the sticker far from the face, unseen
    assert StickerArt.from_png(tmp_path / "deep.png", anchors=((0, 0), (200, 100))).anchors == ((0, 0), (200, 100))
    for outside in (((0, 50), (9999, 50)), ((-1, 50), (180, 50)), ((20, 50), (180, 100.5))):
        with pytest.raises(InvalidArgument, match=r"two pixels of its 200x100 image \(x 0..200, y 0..100\)"):
            StickerArt.from_png(tmp_path / "deep.png", anchors=outside)
    with pytest.raises(InvalidArgument, match=r"not \(0, 50\), \(9999, 50\)"):  # the array's own, too
        StickerArt(deep.image, ((0.0, 50.0), (9999.0, 50.0)), (33, 263))
    with pytest.raises(InvalidArgument, match="cannot read"):
        StickerArt.from_png(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(InvalidImage):
        StickerArt.from_png(tmp_path / "junk.png")


def _bomb_png(width: int, height: int) -> bytes:
    """A valid RGBA PNG of ``width`` x ``height`` transparent pixels in a few hundred KB: its
    zlib stream is one 1 MiB block of zeros compressed once and repeated (full flushes make each
    block stand alone), the checksum worked out (Adler-32 of n zeros is n mod 65521 << 16 | 1)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw, block = height * (1 + 4 * width), 1 << 20  # a filter byte per row, then RGBA: all zero
    stream = zlib.compressobj(9)
    first = stream.compress(b"\0" * block) + stream.flush(zlib.Z_FULL_FLUSH)
    again = stream.compress(b"\0" * block) + stream.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(raw, block)
    last = zlib.compressobj(9, zlib.DEFLATED, -15)
    idat = first + again * (whole - 1) + last.compress(b"\0" * rest) + last.flush() \
        + struct.pack(">I", ((raw % 65521) << 16) | 1)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_a_huge_png_sticker_is_refused_from_its_header(tmp_path, monkeypatch):
    """A 12000x12000 PNG sticker of 0.4 MB (a decompression bomb) was decoded in full (576 MB of
    pixels, seconds) before its size was refused; its header's size refuses it at once."""
    decoded: list[tuple[int, ...]] = []
    imdecode = cv2.imdecode

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        image = imdecode(*args, **kwargs)
        decoded.append(() if image is None else image.shape)
        return image

    monkeypatch.setattr(cv2, "imdecode", recording)
    (tmp_path / "bomb.png").write_bytes(_bomb_png(12000, 12000))
    before, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    with pytest.raises(ImageTooLarge, match="12000x12000; at most 4096 pixels a side"):
        StickerArt.from_png(tmp_path / "bomb.png")
    assert decoded == []  # nothing decoded: the header refused it
    assert time.monotonic() - started < 10  # not a decode's seconds (with a loaded machine's slack)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: nothing decoded
    _bar_png(tmp_path / "small.png")  # the header check lets an ordinary sticker through
    assert StickerArt.from_png(tmp_path / "small.png").image.shape == (100, 200, 4)
    assert decoded == [(100, 200, 4)]  # what a decode looks like to the check above


def test_one_effect_may_be_given_by_its_name_alone(examples, tmp_path):
    """A str is a sequence: apply_effects(path, "hat") and run_ar(clip, "glasses") were
    UnknownEffect 'h', 'a', 't'. One name is that one effect, as in a list of one."""
    photo = Path(examples / "examples" / "obama-720p.jpg")
    assert apply_effects(photo, "hat", "png") == apply_effects(photo, ["hat"], "png")
    assert apply_effects(photo, "hat")[1] == 1
    out = tmp_path / "out.mp4"
    summary = run_ar(str(examples / "examples" / "short_hamilton_clip.mp4"), "glasses", output=out, max_frames=2)
    assert summary["frames"] == 2 and out.stat().st_size > 0
