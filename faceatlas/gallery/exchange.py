"""Export and import a collection as one Parquet file: subjects, faces, embeddings, pack identity.

One row per face (a subject without faces gets one row with a null embedding). The pack
identity and collection options travel in the schema metadata under ``faceatlas.gallery``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from faceatlas.errors import InvalidInput
from faceatlas.gallery.gallery import Gallery
from faceatlas.gallery.models import FaceRecord, Subject
from faceatlas.gallery.sync import decode_embeddings

FORMAT_VERSION = 1
METADATA_KEY = b"faceatlas.gallery"
_BATCH = 10_000


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


def export_collection(gallery: Gallery, collection: str, path: Path, *, with_crops: bool = True) -> int:
    """Write ``collection`` to the Parquet file ``path``; returns the number of faces written."""
    info = gallery.get_collection(collection)
    header = {"format": FORMAT_VERSION, "collection": info.name, "pack_name": info.pack_name,
              "pack_version": info.pack_version, "recognizer_id": info.recognizer_id,
              "embedding_size": info.embedding_size, "keep_crops": info.keep_crops, "metadata": info.metadata}
    schema = _schema(info.embedding_size, header)
    written = 0
    with gallery._sessions() as session, pq.ParquetWriter(path, schema) as writer:
        coll = gallery._collection(session, collection)
        query = (select(Subject.external_id, Subject.name, Subject.meta, FaceRecord.id, FaceRecord.embedding,
                        FaceRecord.quality, FaceRecord.source, FaceRecord.crop)
                 .outerjoin(FaceRecord, FaceRecord.subject_id == Subject.id)
                 .where(Subject.collection_id == coll.id).order_by(Subject.id, FaceRecord.id)
                 .execution_options(yield_per=_BATCH))
        for batch in session.execute(query).partitions():
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
    metadata = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in metadata:
        raise InvalidInput(f"{path} is not a FaceAtlas collection export")
    return json.loads(metadata[METADATA_KEY])


def import_collection(gallery: Gallery, path: Path, *, name: str | None = None) -> int:
    """Create a collection (named as exported, or ``name``) from a Parquet export; returns the
    number of faces imported. The collection keeps the exported pack identity."""
    header = read_header(path)
    target = name or header["collection"]
    gallery._create_bound_collection(target, header["pack_name"], header["pack_version"], header["recognizer_id"],
                                     header["embedding_size"], keep_crops=header["keep_crops"],
                                     metadata=header.get("metadata") or {})
    imported = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH):
        by_subject: dict[str, dict[str, Any]] = {}
        for row in batch.to_pylist():
            entry = by_subject.setdefault(row["external_id"], {"name": row["name"], "faces": [],
                                                               "metadata": json.loads(row["subject_metadata"])})
            if row["embedding"] is not None:
                entry["faces"].append(row)
        for external_id, entry in by_subject.items():
            gallery.ensure_subject(target, external_id, name=entry["name"], metadata=entry["metadata"])
            faces = entry["faces"]
            if faces:
                gallery.add_embeddings(target, external_id, np.asarray([f["embedding"] for f in faces], np.float32),
                                       recognizer_id=header["recognizer_id"],
                                       qualities=[f["quality"] for f in faces], sources=[f["source"] for f in faces],
                                       crops=[f["crop"] for f in faces])
                imported += len(faces)
    return imported
