"""Export and import a collection as one Parquet file: subjects, faces, embeddings, pack identity.

One row per face (a subject without faces gets one row with a null embedding). The pack
identity and collection options travel in the schema metadata under ``faceatlas.gallery``.
This module knows the file format only; :meth:`Gallery.export` and :meth:`Gallery.import_` read
and write the database.
"""

from __future__ import annotations

import json
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
    with null face columns. Returns the number of faces written."""
    header = {"format": FORMAT_VERSION, "collection": info.name, "pack_name": info.pack_name,
              "pack_version": info.pack_version, "recognizer_id": info.recognizer_id,
              "embedding_size": info.embedding_size, "keep_crops": info.keep_crops, "metadata": info.metadata}
    schema = _schema(info.embedding_size, header)
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
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InvalidInput(f"{path.name} is not a FaceAtlas collection export (not Parquet: {exc})") from exc
    if METADATA_KEY not in metadata:
        raise InvalidInput(f"{path} is not a FaceAtlas collection export")
    return json.loads(metadata[METADATA_KEY])


def read_subjects(path: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """The subjects of an export, batch by batch: external id -> name, metadata and face rows
    (embedding, quality, source, crop)."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH):
        by_subject: dict[str, dict[str, Any]] = {}
        for row in batch.to_pylist():
            entry = by_subject.setdefault(row["external_id"], {"name": row["name"], "faces": [],
                                                               "metadata": json.loads(row["subject_metadata"])})
            if row["embedding"] is not None:
                entry["faces"].append(row)
        yield by_subject
