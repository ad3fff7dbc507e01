"""Every input form decodes to the same pixels; bad input raises the right typed error."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, features

from faceatlas.engine import EmptyImage, ImageTooLarge, InvalidImage, TruncatedImage, load_image
from faceatlas.errors import FileMissing
from tests.bad_images import corrupt_avif


@pytest.fixture(scope="module")
def obama_path(examples):
    return examples / "tests" / "test_images" / "obama.jpg"


def test_path_bytes_array_and_pil_give_the_same_image(obama_path):
    from_path = load_image(obama_path)
    assert from_path.dtype == np.uint8 and from_path.shape[2] == 3
    np.testing.assert_array_equal(load_image(obama_path.read_bytes()), from_path)
    np.testing.assert_array_equal(load_image(str(obama_path)), from_path)
    np.testing.assert_array_equal(load_image(Image.open(obama_path)), from_path)
    np.testing.assert_array_equal(load_image(from_path), from_path)
    rgb = np.ascontiguousarray(from_path[:, :, ::-1])
    np.testing.assert_array_equal(load_image(rgb, channels="rgb"), from_path)


def test_grayscale_rgba_and_16_bit_are_converted(examples, obama_path, tmp_path):
    rgba = load_image(examples / "tests" / "test_images" / "32bit.png")
    assert rgba.ndim == 3 and rgba.shape[2] == 3
    grey = np.asarray(Image.open(obama_path).convert("L"))
    assert load_image(grey).shape == grey.shape + (3,)
    sixteen = grey.astype(np.uint16) * 257
    path = tmp_path / "grey16.png"
    Image.fromarray(sixteen).save(path)
    decoded = load_image(path)
    np.testing.assert_allclose(decoded[:, :, 0].astype(int), grey.astype(int), atol=1)


def test_exif_orientation_is_applied(fast_analyzer, obama_path, tmp_path):
    upright = Image.open(obama_path)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # pixels stored rotated...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and EXIF says "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    decoded = load_image(path)
    assert decoded.shape[:2] == (upright.height, upright.width)
    face = fast_analyzer.analyze_one(path)
    assert face.keypoints[:2, 1].mean() < face.keypoints[3:, 1].mean()  # eyes above mouth


def test_bad_inputs_raise_typed_errors(obama_path, tmp_path):
    with pytest.raises(EmptyImage):
        load_image(b"")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(EmptyImage, match="empty"):
        load_image(empty)
    with pytest.raises(InvalidImage, match="not an image"):
        load_image(b"this is a text file, not a picture")
    with pytest.raises(FileMissing, match="no such file"):  # file_not_found, as every command's missing file
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(InvalidImage, match="a folder, not an image file"):  # it said "no such file"
        load_image(tmp_path)
    with pytest.raises(ImageTooLarge, match="is more than the 10 pixels"):  # it said "of 0.0 MP"
        load_image(obama_path, max_pixels=10)
    data = obama_path.read_bytes()
    with pytest.raises(TruncatedImage, match="truncated"):
        load_image(data[: len(data) // 2])
    with pytest.raises(InvalidImage):
        load_image(np.zeros((10, 10, 7), np.uint8))


def test_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch, loads):
    huge = tmp_path / "huge.png"
    Image.new("1", (10_000, 10_000)).save(huge)  # 100 MP, a few kB on disk
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="100.0 MP is more than"):
        load_image(huge)
    assert (10_000, 10_000) not in loads  # the header alone was read
    assert time.perf_counter() - started < 10  # not a decode's time (with a loaded machine's slack)
    monkeypatch.setenv("FACEATLAS_MAX_PIXELS", "150000000")
    assert load_image(huge).shape == (10_000, 10_000, 3)
    assert (10_000, 10_000) in loads  # what a decode looks like to the check above
    with pytest.raises(ImageTooLarge):
        load_image(np.zeros((100, 100, 3), np.uint8), max_pixels=5_000)


def test_png_bytes_round_trip():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 20, 30)).save(buffer, format="PNG")
    decoded = load_image(buffer.getvalue())
    assert decoded.shape == (6, 8, 3) and tuple(decoded[0, 0]) == (30, 20, 10)


def test_a_huge_image_is_reduced_while_decoding_and_faces_keep_original_coordinates(examples, fast_analyzer):
    """Issue 15.6: a small file of 6300x6300 pixels was decoded at full size (2 s, +600 MB); now it is
    reduced by an integer factor while decoding and faces are still reported in the original's pixels."""
    import io

    from PIL import Image

    from faceatlas.engine.image import decode_image

    side, left, top, width = 6300, 2100, 1900, 1000
    canvas = Image.new("RGB", (side, side), (128, 128, 128))
    portrait = Image.open(examples / "tests" / "test_images" / "obama.jpg").convert("RGB")
    canvas.paste(portrait.resize((width, width * portrait.height // portrait.width)), (left, top))
    for kind in ("PNG", "JPEG"):
        out = io.BytesIO()
        canvas.save(out, format=kind)
        array, factor = decode_image(out.getvalue(), work_pixels=16_000_000)
        assert factor >= 2 and array.shape[0] * array.shape[1] <= 16_000_000
        [face] = fast_analyzer.analyze(out.getvalue())
        x1, y1, x2, y2 = face.bbox
        assert left < x1 < x2 < left + width and top < y1 < y2 < top + width * 1.5, (kind, face.bbox)
        full = fast_analyzer.analyze(canvas)[0]  # a PIL image is never reduced: the reference
        assert np.abs(face.bbox - full.bbox).max() < 0.03 * width, (kind, face.bbox, full.bbox)


def test_network_input_is_the_blob_opencv_makes_with_the_padding_a_detector_needs(examples):
    """The detectors' input: bit for bit what cv2.dnn.blobFromImage gives for the padded canvas,
    for a real photo at the size SCRFD runs it, and for a batch of crops."""
    import cv2

    from faceatlas.engine.image import network_input

    photo = cv2.imread(str(examples / "examples/knn_examples/test/kit_with_rose.jpg"))
    resized = cv2.resize(photo, (457, 640))  # 501x700 reduced to a 640 side, padded to 480x640
    canvas = np.zeros((640, 480, 3), np.uint8)
    canvas[:640, :457] = resized
    expected = cv2.dnn.blobFromImage(canvas, 1 / 128, (480, 640), (127.5,) * 3, swapRB=True)
    ours = network_input([resized], 127.5, 1 / 128, 640, 480)
    assert ours.shape == (1, 3, 640, 480) and ours.dtype == np.float32
    assert np.array_equal(ours, expected)
    crops = [np.ascontiguousarray(photo[y : y + 112, 100:212]) for y in (0, 200, 400)]
    assert np.array_equal(network_input(crops, 127.5, 1 / 127.5),
                          cv2.dnn.blobFromImages(crops, 1 / 127.5, (112, 112), (127.5,) * 3, swapRB=True))
    with pytest.raises(ValueError, match="does not fit"):
        network_input([photo], 127.5, 1 / 128, 640, 480)


@pytest.mark.skipif(not features.check_module("avif"), reason="this Pillow decodes no AVIF")
def test_a_corrupt_avif_is_an_invalid_image(obama_path, tmp_path):
    """A corrupt AVIF raised PIL's RuntimeError through decoding: the API answered 500 and the CLI
    lost the other files' results in a traceback."""
    from faceatlas.engine import decoded_pixels, encoded_pixels

    data = corrupt_avif(obama_path)
    with pytest.raises(RuntimeError):  # what PIL raises: the case is the one reported
        Image.open(io.BytesIO(data)).load()
    with pytest.raises(InvalidImage, match="could not be decoded"):
        load_image(data)
    path = tmp_path / "bad.avif"
    path.write_bytes(data)
    with pytest.raises(InvalidImage, match=f"{path}: the image could not be decoded"):
        load_image(path)
    with pytest.raises(InvalidImage):
        decoded_pixels(data)
    assert encoded_pixels(data) == 0


@pytest.mark.parametrize("mode", ["P", "P+transparency", "1", "I;16", "GIF"])
def test_palette_bilevel_and_16_bit_images_are_reduced_as_the_others(obama_path, mode):
    """decode_image reduced a palette (P), bilevel (1) or 16-bit (I;16) image above work_pixels with
    PIL's reduce, which refuses those modes ("image has wrong mode"): the API refused them
    (invalid_image) while the CLI, which does not reduce, found the faces."""
    from faceatlas.engine.image import decode_image

    rgb = Image.open(obama_path).convert("RGB")
    rgb = rgb.crop((0, 0, rgb.width // 2 * 2, rgb.height // 2 * 2))  # even sides: reduced by 2 exactly
    grey = rgb.convert("L")
    source = {"P": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256),
              "P+transparency": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=255),
              "1": grey.convert("1"),
              "I;16": Image.fromarray(np.asarray(grey, np.uint16) * 257),
              "GIF": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)}[mode]
    out = io.BytesIO()
    if mode == "P+transparency":
        source.save(out, format="PNG", transparency=255)  # an index no pixel uses
    else:
        source.save(out, format="GIF" if mode == "GIF" else "PNG")
    assert Image.open(io.BytesIO(out.getvalue())).mode == source.mode
    work = rgb.width * rgb.height // 4  # a factor of 2 (the sides are even)
    reduced, factor = decode_image(out.getvalue(), work_pixels=work)
    full, _ = decode_image(out.getvalue())
    assert factor == 2 and reduced.shape == (rgb.height // 2, rgb.width // 2, 3)
    if mode != "1":  # the reduced image is the full one, reduced (a bilevel image's dither averages to grey)
        expected = full.reshape(rgb.height // 2, 2, rgb.width // 2, 2, 3).mean(axis=(1, 3))
        assert np.abs(reduced - expected).mean() < 2, mode
