"""Export and import a collection as one Parquet file: subjects, faces, embeddings, pack identity.

One row per face (a subject without faces gets one row with a null embedding). The pack
identity and collection options travel in the schema metadata under ``faceatlas.gallery``.
This module knows the file format only; :meth:`Gallery.export` and :meth:`Gallery.import_` read
and write the database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from faceatlas.errors import InvalidInput
from faceatlas.gallery.sync import decode_embeddings
from faceatlas.gallery.types import CollectionInfo

FORMAT_VERSION = 1
METADATA_KEY = b"faceatlas.gallery"
BATCH = 10_000
MAX_EMBEDDING_SIZE = 4096  # the widest embedding an export may declare (packs here: 128 to 640)


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
    ], metadata={METADATA_KEY: json.dumps(header).encode()})


def write_collection(path: Path, info: CollectionInfo, batches: Iterable[Sequence[Sequence[Any]]], *,
                     with_crops: bool = True) -> int:
    """Write a collection to the Parquet file ``path``; ``batches`` yield rows of (external_id, name,
    subject metadata, face id, embedding bytes, quality, source, crop), a subject without faces once
    with null face columns. Returns the number of faces written. The file appears whole or not at
    all (written beside it, then renamed over it); a path that cannot be written is
    :class:`InvalidInput` naming it (it was ``error (error): [Errno 2] Failed to open local file``)."""
    header = {"format": FORMAT_VERSION, "collection": info.name, "pack_name": info.pack_name,
              "pack_version": info.pack_version, "recognizer_id": info.recognizer_id,
              "embedding_size": info.embedding_size, "keep_crops": info.keep_crops, "metadata": info.metadata}
    schema = _schema(info.embedding_size, header)
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path}: a folder, not a file to write the export to")
    if not path.parent.is_dir():
        raise InvalidInput(f"{path}: no such folder {path.parent}")
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        written = _write(partial, schema, info, batches, with_crops)
        os.replace(partial, path)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot write it ({exc.strerror.lower() if exc.strerror else exc})") from exc
    finally:
        partial.unlink(missing_ok=True)
    return written


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
            }, schema=schema)
            writer.write_table(table)
            written += sum(b is not None for b in blobs)
    return written


def read_header(path: Path) -> dict[str, Any]:
    """The pack identity and collection options stored in an export file."""
    if not Path(path).is_file():
        raise InvalidInput(f"{path}: no such file")
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InvalidInput(f"{path.name} is not a FaceAtlas collection export (not Parquet: {exc})") from exc
    metadata = schema.metadata or {}
    if METADATA_KEY not in metadata:
        raise InvalidInput(f"{path.name} is not a FaceAtlas collection export")
    missing = [column for column in _schema(1, {}).names if column not in schema.names]
    if missing:  # a column dropped by an edit was a KeyError traceback half way through the import
        raise InvalidInput(f"{path.name}: the export lacks its column(s) {', '.join(missing)}")
    try:
        header = json.loads(metadata[METADATA_KEY])
    except ValueError as exc:
        raise InvalidInput(f"{path.name}: its export header is not JSON ({exc})") from exc
    except RecursionError as exc:  # "[" * 100_000: a traceback (the API's 500) instead of bad input
        raise InvalidInput(f"{path.name}: its export header nests deeper than JSON of an export does") from exc
    return _checked_header(header, path.name)


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


def read_subjects(path: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """The subjects of an export, batch by batch: external id -> name, metadata and face rows
    (embedding, quality, source, crop)."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH):
        by_subject: dict[str, dict[str, Any]] = {}
        for row in batch.to_pylist():
            entry = by_subject.get(row["external_id"])
            if entry is None:
                entry = by_subject[row["external_id"]] = {"name": row["name"], "faces": [],
                                                          "metadata": _subject_metadata(row)}
            if row["embedding"] is not None:
                entry["faces"].append(row)
        yield by_subject


def _subject_metadata(row: dict[str, Any]) -> Any:
    try:
        return json.loads(row["subject_metadata"] or "{}")
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"subject {str(row['external_id'])[:60]!r}: its metadata is not JSON ({exc})") from exc
    except RecursionError as exc:  # metadata nests at most METADATA_MAX_DEPTH levels anyway
        raise InvalidInput(f"subject {str(row['external_id'])[:60]!r}: its metadata nests deeper than "
                           "metadata may") from exc
