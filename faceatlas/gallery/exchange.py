"""Export and import a collection as one Parquet file: subjects, faces, embeddings, pack identity.

One row per face (a subject without faces gets one row with a null embedding). The pack
identity and collection options travel in the schema metadata under ``faceatlas.gallery``.

Versions: the header's ``format`` (:data:`FORMAT_VERSION`) changes only when a reader of the
earlier format would misread a newer file, which it then refuses by that number; ``format_minor``
(:data:`FORMAT_MINOR`, 0 when absent) counts changes that an earlier reader of the same format reads
safely, ignoring what it does not know: optional columns (:data:`OPTIONAL_COLUMNS`), which a reader
takes when a file has them and does without when it does not. Minor 1 added the subjects' and
faces' times (UTC), so a restored backup keeps when each person was enrolled; a file without them
(FaceAtlas before it) imports with the import's time, as it always did.
This module knows the file format only; :meth:`Gallery.export` and :meth:`Gallery.import_` read
and write the database.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from faceatlas.errors import FileMissing, InvalidArgument, InvalidInput
from faceatlas.gallery.rules import ID_MAX_LENGTH, METADATA_MAX_BYTES, NAME_MAX_LENGTH
from faceatlas.gallery.sync import decode_embeddings
from faceatlas.gallery.types import CollectionInfo
from faceatlas.settings import EngineSettings

FORMAT_VERSION = 1
FORMAT_MINOR = 1  # 1: the times columns (see the module's docstring)
# optional columns (written since the minor version given): a file without them still imports
OPTIONAL_COLUMNS = {"subject_created_at": 1, "subject_updated_at": 1, "face_created_at": 1}
TIME_TYPE = pa.timestamp("us", tz="UTC")
METADATA_KEY = b"faceatlas.gallery"
BATCH = 10_000
MAX_EMBEDDING_SIZE = 4096  # the widest embedding an export may declare (packs here: 128 to 640)
# A face crop (``gallery.source_crop``: the face box grown by half its size on each side, as a
# quality-95 JPEG) is at most the whole photo: 40 MP (FACEATLAS_MAX_PIXELS) at about half a byte a
# pixel is ~20 MB; a crop of a face close up in a 12 MP photo is 2 to 6 MB. An import's crop is a
# JPEG or PNG image of at most this many bytes (a 12.9 kB file held one of 300 MB of zeros).
MAX_CROP_BYTES = 32 * 1024 * 1024
CROP_FORMATS = ("JPEG", "PNG")
# Images do not compress: a crop column inflating more than this many times its stored size (beyond
# CROP_SLACK) is not images (the 300 MB of zeros was 12.9 kB of zstd), refused before it is read.
CROP_INFLATION = 8
CROP_SLACK = 64 * 1024 * 1024
READ_BUDGET = 256 * 1024 * 1024  # the bytes of one batch of rows read at a time, at most about
SOURCE_MAX_LENGTH = 1000  # a face's source as its column keeps it (gallery._source_text)


def _schema(dim: int, header: dict[str, Any]) -> pa.Schema:
    return pa.schema([
        ("external_id", pa.string()),
        ("name", pa.string()),
        ("subject_metadata", pa.string()),
        ("face_id", pa.int64()),
        ("embedding", pa.list_(pa.float32(), dim)),
        ("quality", pa.float64()),
        ("source", pa.string()),
        ("crop", pa.binary()),
        ("subject_created_at", TIME_TYPE),
        ("subject_updated_at", TIME_TYPE),
        ("face_created_at", TIME_TYPE),
    ], metadata={METADATA_KEY: json.dumps(header).encode()})


def _required_columns() -> list[str]:
    return [name for name in _schema(1, {}).names if name not in OPTIONAL_COLUMNS]


def _string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _expected_types(dim: int) -> dict[str, tuple[str, Callable[[pa.DataType], bool]]]:
    """Each column: the type an export writes (as the refusal names it) and which types read as it
    (a file rewritten elsewhere may hold large strings, or its embeddings as variable lists checked row
    by row); a column of nulls only (type null) reads as any that may be null."""

    def nullable(test: Callable[[pa.DataType], bool]) -> Callable[[pa.DataType], bool]:
        return lambda kind: pa.types.is_null(kind) or test(kind)

    def embedding(kind: pa.DataType) -> bool:
        if pa.types.is_fixed_size_list(kind):
            return kind.list_size == dim and kind.value_type in (pa.float32(), pa.float64())
        return (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and kind.value_type in (pa.float32(),
                                                                                                pa.float64())

    written = {field.name: str(field.type) for field in _schema(dim, {})}
    tests: dict[str, Callable[[pa.DataType], bool]] = {
        "external_id": _string, "name": nullable(_string), "subject_metadata": nullable(_string),
        "face_id": nullable(pa.types.is_integer), "embedding": nullable(embedding),
        "quality": nullable(pa.types.is_floating), "source": nullable(_string),
        "crop": nullable(lambda kind: pa.types.is_binary(kind) or pa.types.is_large_binary(kind)),
        **dict.fromkeys(OPTIONAL_COLUMNS, nullable(pa.types.is_timestamp)),
    }
    return {name: (written[name], test) for name, test in tests.items()}


def _value_bytes(dim: int) -> dict[str, int]:
    """The most bytes one value of each column can take (UTF-8 at 4 bytes a character, JSON's
    escapes at 6 per byte): what bounds a column chunk's size before it is read."""
    return {"external_id": 4 * ID_MAX_LENGTH, "name": 4 * NAME_MAX_LENGTH,
            "subject_metadata": 6 * METADATA_MAX_BYTES, "face_id": 8, "embedding": 8 * dim, "quality": 8,
            "source": 4 * SOURCE_MAX_LENGTH, "crop": MAX_CROP_BYTES, **dict.fromkeys(OPTIONAL_COLUMNS, 8)}


def write_collection(path: Path, info: CollectionInfo, batches: Iterable[Sequence[Sequence[Any]]], *,
                     with_crops: bool = True) -> int:
    """Write a collection to the Parquet file ``path``; ``batches`` yield rows of (external_id, name,
    subject metadata, face id, embedding bytes, quality, source, crop, subject created_at, subject
    updated_at, face created_at; times naive UTC as the database keeps them), a subject without faces
    once with null face columns. Returns the number of faces written. The file appears whole or not at
    all (written beside it, then renamed over it); a path that cannot be written is
    :class:`InvalidInput` naming it (it was ``error (error): [Errno 2] Failed to open local file``).
    ``path`` ends in ``.parquet`` (else :class:`InvalidArgument`), and a path already there is
    replaced only when it is a regular file that is an earlier export (else :class:`InvalidArgument`,
    nothing written): the rename replaces whatever is there."""
    header = {"format": FORMAT_VERSION, "format_minor": FORMAT_MINOR, "collection": info.name,
              "pack_name": info.pack_name, "pack_version": info.pack_version, "recognizer_id": info.recognizer_id,
              # an export without its crops says so: its import keeps none (reembed then refused every face)
              "embedding_size": info.embedding_size, "keep_crops": info.keep_crops and with_crops,
              "metadata": info.metadata}
    schema = _schema(info.embedding_size, header)
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path}: a folder, not a file to write the export to")
    if not path.parent.is_dir():
        raise InvalidInput(f"{path}: no such folder {path.parent}")
    if path.suffix.lower() != ".parquet":  # a user's photo given as the path became Parquet, silently
        raise InvalidArgument(f"{path}: an export is a Parquet file: give a path ending in .parquet (a file "
                              "already there is replaced only when it is one)")
    if os.path.lexists(path):  # a JPEG, a user's own Parquet file or a link named .parquet was replaced
        _check_replaceable(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        written = _write(partial, schema, info, batches, with_crops)
        os.replace(partial, path)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot write it ({exc.strerror.lower() if exc.strerror else exc})") from exc
    finally:
        partial.unlink(missing_ok=True)
    return written


def _check_replaceable(path: Path) -> None:
    """:class:`InvalidArgument` unless the existing ``path`` is a regular file that is a FaceAtlas
    export (its header reads, :func:`read_header`): only an earlier export is replaced, nothing else
    (a photo, a Parquet file of other columns, a link) is, and nothing is written."""
    if path.is_symlink():
        what = "is a link, not a FaceAtlas export"
    elif not path.is_file():
        what = "is no regular file, not a FaceAtlas export"
    else:
        try:
            read_header(path)
            return
        except InvalidInput:
            what = "is not a FaceAtlas export"
    raise InvalidArgument(f"{path} {what}: an export replaces only an earlier export, so nothing was written "
                          "(give another path, or move that file away first)")


def _write(path: Path, schema: pa.Schema, info: CollectionInfo, batches: Iterable[Sequence[Sequence[Any]]],
           with_crops: bool) -> int:
    written = 0
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches:
            columns = list(zip(*batch))
            blobs = list(columns[4])
            vectors = decode_embeddings([b for b in blobs if b is not None], info.embedding_size)
            rows_iter = iter(vectors)
            embeddings = [next(rows_iter) if b is not None else None for b in blobs]
            crops = list(columns[7]) if with_crops else [None] * len(batch)
            table = pa.table({
                "external_id": columns[0], "name": columns[1],
                "subject_metadata": [json.dumps(m or {}) for m in columns[2]],
                "face_id": columns[3],
                "embedding": pa.array([None if e is None else e.tolist() for e in embeddings],
                                      type=pa.list_(pa.float32(), info.embedding_size)),
                "quality": columns[5], "source": columns[6], "crop": crops,
                # naive datetimes read as UTC: the database's (db.utcnow)
                "subject_created_at": columns[8], "subject_updated_at": columns[9], "face_created_at": columns[10],
            }, schema=schema)
            writer.write_table(table)
            written += sum(b is not None for b in blobs)
    return written


def read_header(path: Path) -> dict[str, Any]:
    """The pack identity and collection options stored in an export file, once its columns are of
    the types an export writes and no column holds more than its values can (read from the Parquet
    metadata, before any row is): a file that fails either is :class:`InvalidInput` naming why."""
    if Path(path).is_dir():  # it said "no such file" of a folder that is there
        raise InvalidInput(f"{path}: a folder, not a Parquet export: give the export's file")
    if not Path(path).is_file():
        raise FileMissing(f"{path}: no such file")
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InvalidInput(f"{path.name} is not a FaceAtlas collection export (not Parquet: {exc})") from exc
    metadata = schema.metadata or {}
    if METADATA_KEY not in metadata:
        raise InvalidInput(f"{path.name} is not a FaceAtlas collection export")
    missing = [column for column in _required_columns() if column not in schema.names]
    if missing:  # a column dropped by an edit was a KeyError traceback half way through the import
        raise InvalidInput(f"{path.name}: the export lacks its column(s) {', '.join(missing)}")
    try:
        header = json.loads(metadata[METADATA_KEY])
    except ValueError as exc:
        raise InvalidInput(f"{path.name}: its export header is not JSON ({exc})") from exc
    except RecursionError as exc:  # "[" * 100_000: a traceback (the API's 500) instead of bad input
        raise InvalidInput(f"{path.name}: its export header nests deeper than JSON of an export does") from exc
    header = _checked_header(header, path.name)
    _check_types(schema, header["embedding_size"], path.name)
    _check_sizes(Path(path), header["embedding_size"])
    return header


def _check_types(schema: pa.Schema, dim: int, name: str) -> None:
    """Each column of the type an export writes: quality as text, a crop as a number, embeddings of
    text, a source or a name as a number were a 500 half way through the import (a traceback in
    SQLAlchemy, NumPy or the gallery's rules)."""
    for column, (written, accepts) in _expected_types(dim).items():
        if column not in schema.names:
            continue  # an optional column (read_header refused a file without one that is not)
        found = schema.field(column).type
        if not accepts(found):
            raise InvalidInput(f"{name}: column '{column}' is {found}, not {written} as an export writes it")


def _check_sizes(path: Path, dim: int) -> None:
    """No column chunk holds more bytes than its rows' values can (a crop at most MAX_CROP_BYTES,
    a name 300 characters, ...), and the crops are not far smaller stored than read (images do not
    compress): from the Parquet metadata, before a row is read."""
    try:
        metadata = pq.ParquetFile(path).metadata
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InvalidInput(f"{path.name} is not a FaceAtlas collection export (not Parquet: {exc})") from exc
    caps = _value_bytes(dim)
    crops_read = crops_stored = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            column = chunk.path_in_schema.split(".")[0]
            if column not in caps:
                continue  # a column an export does not have is never read
            cap = row_group.num_rows * (caps[column] + 16) + 1024 * 1024
            if chunk.total_uncompressed_size > cap:
                raise InvalidInput(f"{path.name}: column '{column}' holds {chunk.total_uncompressed_size:,} bytes in "
                                   f"{row_group.num_rows:,} rows (row group {group + 1}), more than its values can")
            if column == "crop":
                crops_read += chunk.total_uncompressed_size
                crops_stored += chunk.total_compressed_size
    if crops_read > max(CROP_SLACK, CROP_INFLATION * crops_stored):
        raise InvalidInput(f"{path.name}: column 'crop' holds {crops_read:,} bytes stored in {crops_stored:,}: face "
                           "crops are JPEG or PNG images, which do not compress so")


def _checked_header(header: object, name: str) -> dict[str, Any]:
    """``header`` when it is one this version writes: a file edited or made elsewhere is refused here,
    before a collection is created from it."""
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        found = header.get("format") if isinstance(header, dict) else header
        if isinstance(found, dict | list):  # its text, deep enough, was a RecursionError
            found = type(found).__name__
        raise InvalidInput(f"{name}: export format {str(found)[:40]!r} is not one this version reads "
                           f"({FORMAT_VERSION})")
    strings = ("collection", "pack_name", "pack_version", "recognizer_id")
    wrong = [key for key in strings if not isinstance(header.get(key), str) or not 0 < len(header[key]) <= 200]
    minor = header.get("format_minor", 0)  # any: a newer minor adds only what this version may ignore
    if not isinstance(minor, int) or isinstance(minor, bool) or minor < 0:
        wrong.append("format_minor")
    size = header.get("embedding_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_EMBEDDING_SIZE:
        wrong.append("embedding_size")
    if not isinstance(header.get("keep_crops"), bool):
        wrong.append("keep_crops")
    if not isinstance(header.get("metadata") or {}, dict):
        wrong.append("metadata")
    if wrong:
        raise InvalidInput(f"{name}: the export header's {', '.join(wrong)} "
                           f"{'is' if len(wrong) == 1 else 'are'} not what an export holds")
    return header


def read_subjects(path: Path, embedding_size: int) -> Iterator[dict[str, dict[str, Any]]]:
    """The subjects of an export, batch by batch: external id -> name, metadata and face rows
    (embedding, quality, source, crop, created_at), with the subject's ``created_at`` and
    ``updated_at``: naive UTC, None where the file has no times (an export before
    :data:`FORMAT_MINOR` 1) or the row holds none. A row an export cannot hold is :class:`InvalidInput` naming
    it (1 for the first) and its subject: a null id, a face without its id, an embedding not of
    ``embedding_size`` numbers, a quality that is NaN or infinite, a crop that is not a JPEG or PNG
    image of at most :data:`MAX_CROP_BYTES`. Batches are at most about :data:`READ_BUDGET` bytes."""
    parquet = pq.ParquetFile(path)
    columns = [name for name in _schema(1, {}).names if name in parquet.schema_arrow.names]
    max_pixels = EngineSettings().max_pixels
    first = 0
    for batch in parquet.iter_batches(batch_size=_batch_rows(parquet, columns), columns=columns):
        _check_batch(batch, first, embedding_size, max_pixels)
        batch = _times_in_utc(batch)
        by_subject: dict[str, dict[str, Any]] = {}
        for row in batch.to_pylist():
            entry = by_subject.get(row["external_id"])
            if entry is None:
                entry = by_subject[row["external_id"]] = {
                    "name": row["name"], "faces": [], "metadata": _subject_metadata(row),
                    "created_at": _utc(row.get("subject_created_at")),
                    "updated_at": _utc(row.get("subject_updated_at"))}
            if row["embedding"] is not None:
                row["created_at"] = _utc(row.get("face_created_at"))
                entry["faces"].append(row)
        first += batch.num_rows
        yield by_subject


def _times_in_utc(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with its times columns as an export writes them (microseconds, UTC; one written
    without a time zone is taken as UTC, nanoseconds are cut to microseconds), checked in range."""
    for index, field in enumerate(batch.schema):
        if field.name in OPTIONAL_COLUMNS and pa.types.is_timestamp(field.type) and field.type != TIME_TYPE:
            batch = batch.set_column(index, field.name, batch.column(index).cast(TIME_TYPE, safe=False))
    return batch


def _utc(value: datetime | None) -> datetime | None:
    """A time read from an export as the database keeps it: naive UTC (a column written without a
    time zone, by a file rewritten elsewhere, is taken as UTC)."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _batch_rows(parquet: pq.ParquetFile, columns: Sequence[str]) -> int:
    """Rows read at a time: BATCH, fewer where a row group's columns are large (crops) so that a
    batch is about READ_BUDGET bytes."""
    rows = BATCH
    metadata = parquet.metadata
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        size = sum(row_group.column(i).total_uncompressed_size for i in range(row_group.num_columns)
                   if row_group.column(i).path_in_schema.split(".")[0] in columns)
        if size and row_group.num_rows:
            rows = min(rows, max(1, READ_BUDGET * row_group.num_rows // size))
    return rows


def _check_batch(batch: pa.RecordBatch, first: int, dim: int, max_pixels: int) -> None:
    """The rows of ``batch`` (``first``: the file's row number of its first, from 0) as an export
    writes them; see :func:`read_subjects`."""
    ids = batch.column("external_id")

    def refuse(index: int, what: str) -> InvalidInput:
        subject = ids[index].as_py()
        named = "" if subject is None else f" (subject {str(subject)[:60]!r})"
        return InvalidInput(f"row {first + index + 1}{named}: {what}")

    def first_true(mask: pa.Array) -> int | None:
        found = pc.index(pc.fill_null(mask, False), True).as_py()
        return None if found < 0 else int(found)

    if (index := first_true(pc.is_null(ids))) is not None:
        raise refuse(index, "its external_id is null")
    embeddings = batch.column("embedding")
    faces = pc.is_valid(embeddings)
    if (index := first_true(pc.and_(faces, pc.is_null(batch.column("face_id"))))) is not None:
        raise refuse(index, "a face (an embedding) without its face_id")
    if not pa.types.is_null(embeddings.type):
        lengths = pc.list_value_length(embeddings)
        if (index := first_true(pc.not_equal(lengths, dim))) is not None:
            raise refuse(index, f"its embedding holds {lengths[index].as_py()} numbers, not the export's {dim}")
        if pc.list_flatten(embeddings).null_count:
            raise refuse(_row_with_null_value(embeddings), "its embedding holds a null where a number belongs")
    quality = batch.column("quality")
    if not pa.types.is_null(quality.type) and (index := first_true(pc.invert(pc.is_finite(quality)))) is not None:
        raise refuse(index, f"its quality is {quality[index].as_py()}, not a number a face's quality is")
    for column in OPTIONAL_COLUMNS:
        kind = batch.schema.field(column).type if column in batch.schema.names else pa.null()
        if pa.types.is_timestamp(kind) and kind.unit != "ns":  # nanoseconds from 1970 reach 1677 to 2262 only
            times = batch.column(column).cast(pa.int64())  # in the column's unit from 1970, UTC
            low, high = (_epoch(moment, kind.unit) for moment in (datetime.min, datetime.max))
            if (index := first_true(pc.or_(pc.less(times, low), pc.greater(times, high)))) is not None:
                raise refuse(index, f"its {column} is out of the years 1 to 9999, not a time FaceAtlas keeps")
    crops = batch.column("crop")
    if not pa.types.is_null(crops.type):
        if (index := first_true(pc.greater(pc.binary_length(crops), MAX_CROP_BYTES))) is not None:
            raise refuse(index, f"its crop is {len(crops[index].as_py()):,} bytes, more than the {MAX_CROP_BYTES:,} "
                                "a face crop may be")
        for index, crop in enumerate(crops):
            if crop.is_valid:
                problem = _crop_problem(crop.as_buffer(), max_pixels)
                if problem:
                    raise refuse(index, problem)


def _epoch(moment: datetime, unit: str) -> int:
    """``moment`` (naive UTC) as a timestamp column of ``unit`` holds it."""
    micros = (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)
    return {"s": micros // 1_000_000, "ms": micros // 1000, "us": micros, "ns": micros * 1000}[unit]


def _row_with_null_value(embeddings: pa.Array) -> int:
    for index, vector in enumerate(embeddings):
        if vector.is_valid and vector.values.null_count:
            return index
    return 0


def _crop_problem(crop: pa.Buffer, max_pixels: int) -> str | None:
    """Why ``crop`` is no face crop (a JPEG or PNG image of at most ``max_pixels`` that decodes: a
    JPEG at 1/8 scale, a PNG's chunks checked), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: the pixels are checked here
            with Image.open(io.BytesIO(crop.to_pybytes())) as image:
                if image.format not in CROP_FORMATS:
                    return f"its crop is {image.format or 'an unknown format'}, not a JPEG or PNG image"
                width, height = image.size
                if not 0 < width * height <= max_pixels:
                    return f"its crop is {width}x{height} pixels, not an image a face crop can be"
                if image.format == "JPEG":
                    image.draft("L", (math.ceil(width / 8), math.ceil(height / 8)))
                    image.load()
                else:
                    image.verify()
    except UnidentifiedImageError:  # PIL's message names the in-memory file: "<_io.BytesIO object at 0x...>"
        return "its crop is not a JPEG or PNG image"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return f"its crop is not a JPEG or PNG image ({str(exc)[:100]})"
    return None


def _subject_metadata(row: dict[str, Any]) -> Any:
    try:
        return json.loads(row["subject_metadata"] or "{}")
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"subject {str(row['external_id'])[:60]!r}: its metadata is not JSON ({exc})") from exc
    except RecursionError as exc:  # metadata nests at most METADATA_MAX_DEPTH levels anyway
        raise InvalidInput(f"subject {str(row['external_id'])[:60]!r}: its metadata nests deeper than "
                           "metadata may") from exc
