"""What `Gallery.import_` (POST /v1/collections/import, `faceatlas gallery import`) refuses of an
edited export, as bad input naming the column or the row, leaving no collection behind: columns of
another type than an export writes, rows an export cannot hold, and crops that are no face crops
(a 12.9 kB file held one of 300 MB of zeros, read whole into the server's memory and the database)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from faceatlas.errors import InvalidInput
from faceatlas.gallery import Gallery
from faceatlas.gallery.exchange import MAX_CROP_BYTES, read_header


@pytest.fixture
def export(gallery: Gallery, examples: Path, tmp_path: Path) -> Path:
    """A collection of two subjects with two faces each and their crops (JPEG crops of a real face)
    exported to a Parquet file."""
    rid = gallery.create_collection("tiny", "scrfd-mbf", keep_crops=True).recognizer_id
    photo = cv2.imread(str(examples / "tests" / "test_images" / "obama.jpg"))
    crop = cv2.imencode(".jpg", photo[40:240, 60:260], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    rng = np.random.default_rng(0)
    for subject in ("ada", "bob"):
        gallery.add_embeddings("tiny", subject, rng.normal(size=(2, 128)), recognizer_id=rid,
                               qualities=[0.8, None], sources=[f"{subject}.jpg"] * 2, crops=[crop, crop])
    path = tmp_path / "tiny.parquet"
    assert gallery.export("tiny", path) == 4
    return path


def _rewritten(source: Path, target: Path, column: str, values: pa.Array, **options: object) -> Path:
    """``source`` with ``column`` replaced by ``values`` (the header kept)."""
    table = pq.read_table(source)
    table = table.set_column(table.schema.get_field_index(column), column, values)
    pq.write_table(table.replace_schema_metadata(pq.read_schema(source).metadata), target, **options)
    return target


def _refused(gallery: Gallery, path: Path, *words: str) -> str:
    """The import of ``path`` refused as bad input whose message holds ``words``; nothing is left."""
    target = gallery.for_tenant("restore")
    with pytest.raises(InvalidInput) as refused:
        target.import_(path, name="copy")
    message = str(refused.value)
    assert all(word in message for word in words), message
    assert target.list_collections() == [], message
    return message


def _image(kind: str, size: tuple[int, int] = (32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (90, 60, 30)).save(out, kind)
    return out.getvalue()


def test_a_column_of_another_type_than_an_export_writes_is_refused_naming_it(gallery: Gallery, export: Path,
                                                                             tmp_path: Path) -> None:
    """Each was a 500 half way through the import: quality as text (StatementError), a crop as text
    or a number, embeddings of text (NumPy's ValueError), a source or a name as a number
    (AttributeError, TypeError in the gallery's rules). Refused from the schema, before a
    collection is made."""
    rows = pq.read_table(export).num_rows
    edits = {
        "quality": (pa.array(["abc"] * rows), "string", "double"),
        "crop": (pa.array(["abc"] * rows), "string", "binary"),
        "crop ": (pa.array(range(rows), pa.int64()), "int64", "binary"),
        "face_id": (pa.array(["1"] * rows), "string", "int64"),
        "embedding": (pa.array([["0.5"] * 128] * rows, pa.list_(pa.string())), "list<element: string>",
                      "fixed_size_list<item: float>[128]"),
        "embedding ": (pa.array([[0.1] * 129] * rows, pa.list_(pa.float32(), 129)),
                       "fixed_size_list<element: float>[129]", "fixed_size_list<item: float>[128]"),
        "source": (pa.array(range(rows), pa.int64()), "int64", "string"),
        "name": (pa.array(range(rows), pa.int64()), "int64", "string"),
    }
    for what, (values, found, written) in edits.items():
        column = what.strip()
        path = _rewritten(export, tmp_path / f"{what.replace(' ', '_')}x.parquet", column, values)
        with pytest.raises(InvalidInput) as refused:
            read_header(path)  # the schema refuses it: no row is read
        assert str(refused.value) == (f"{path.name}: column '{column}' is {found}, not {written} as an export "
                                      "writes it")
        _refused(gallery, path, column, found, written)


def test_a_row_an_export_cannot_hold_is_refused_naming_it(gallery: Gallery, export: Path, tmp_path: Path) -> None:
    """Embeddings as variable lists (a file rewritten elsewhere) import, but one of the wrong length
    was NumPy's ValueError (a 500); a quality of NaN or infinity was stored; a face without its id,
    an embedding holding a null and a null subject id are no rows of an export either."""
    table = pq.read_table(export)
    vectors = table.column("embedding").to_pylist()
    as_lists = _rewritten(export, tmp_path / "lists.parquet", "embedding", pa.array(vectors, pa.list_(pa.float32())))
    short = [vectors[0], vectors[1][:127], *vectors[2:]]
    holed = [vectors[0], vectors[1], [None, *vectors[2][1:]], vectors[3]]
    qualities = table.column("quality").to_pylist()
    face_ids = table.column("face_id").to_pylist()
    refused = {
        "short": (pa.array(short, pa.list_(pa.float32())), "embedding", "row 2 (subject 'ada')", "127 numbers"),
        "hole": (pa.array(holed, pa.list_(pa.float32(), 128)), "embedding", "row 3 (subject 'bob')", "null"),
        "nan": (pa.array([qualities[0], float("nan"), *qualities[2:]], pa.float64()), "quality", "row 2", "nan"),
        "inf": (pa.array([*qualities[:3], float("inf")], pa.float64()), "quality", "row 4 (subject 'bob')", "inf"),
        "face_id": (pa.array([None, *face_ids[1:]], pa.int64()), "face_id", "row 1 (subject 'ada')", "face_id"),
        "external_id": (pa.array([*table.column("external_id").to_pylist()[:2], None, "bob"], pa.string()),
                        "external_id", "row 3:", "external_id is null"),
    }
    for what, (values, column, *words) in refused.items():
        _refused(gallery, _rewritten(export, tmp_path / f"{what}.parquet", column, values), *words)
    target = gallery.for_tenant("restore")
    assert target.import_(as_lists, name="copy") == 4  # a null quality (the second face's) is what exports hold
    assert [f.quality for f in target.list_faces("copy").items] == qualities


def test_a_crop_that_is_no_face_crop_is_refused(gallery: Gallery, export: Path, tmp_path: Path) -> None:
    """A crop was stored whatever its bytes: one of 300 MB of zeros (12.9 kB of zstd) took the server
    from 1 to 2.7 GB and the database 300 MB more. Crops that inflate as images do not are refused
    from the Parquet metadata before a row is read; a crop above MAX_CROP_BYTES, or bytes that are
    no JPEG or PNG image, at its row."""
    crops = pq.read_table(export).column("crop").to_pylist()
    zeros = _rewritten(export, tmp_path / "zeros.parquet", "crop",
                       pa.array([b"\0" * 80_000_000, *crops[1:]], pa.binary()), compression="zstd")
    assert zeros.stat().st_size < 100_000
    inflates = "column 'crop' holds 80,[0-9,]+ bytes stored in [0-9,]+: face crops are JPEG"
    with pytest.raises(InvalidInput, match=inflates):
        read_header(zeros)  # from the Parquet metadata: no row is read
    _refused(gallery, zeros, "column 'crop'", "do not compress")
    jpeg_header = crops[0][:600]  # a JPEG's header, then 20 MB of zeros each: under the cap, no image
    padded = [jpeg_header + bytes([i]) + b"\0" * 20_000_000 for i in range(4)]
    inflated = _rewritten(export, tmp_path / "inflated.parquet", "crop", pa.array(padded, pa.binary()),
                          compression="zstd")
    with pytest.raises(InvalidInput, match=inflates):
        read_header(inflated)
    over = _rewritten(export, tmp_path / "over.parquet", "crop",
                      pa.array([*crops[:2], jpeg_header + b"\0" * MAX_CROP_BYTES, crops[3]], pa.binary()))
    _refused(gallery, over, "row 3 (subject 'bob')", f"more than the {MAX_CROP_BYTES:,} a face crop may be")
    not_images = {"zeros": b"\0" * 1000, "text": b"not an image", "gif": _image("GIF"),
                  "cut": crops[0][: len(crops[0]) // 3], "vast": _image("PNG", (9000, 9000)), "empty": b""}
    for what, bad in not_images.items():
        path = _rewritten(export, tmp_path / f"{what}.parquet", "crop", pa.array([*crops[:3], bad], pa.binary()))
        message = _refused(gallery, path, "row 4 (subject 'bob')", "crop")
        assert what != "gif" or "GIF" in message, message
    png = _rewritten(export, tmp_path / "png.parquet", "crop", pa.array([_image("PNG"), *crops[1:]], pa.binary()))
    target = gallery.for_tenant("restore")
    assert target.import_(png, name="copy") == 4  # a PNG crop, and the exported JPEG ones, import
