"""The gallery layer: tenants -> collections -> subjects -> faces, persisted with SQLAlchemy
(SQLite or PostgreSQL) and searched through a derived vector index (exact or FAISS HNSW)."""

from faceatlas.gallery.errors import AlreadyExists, NotFound
from faceatlas.gallery.gallery import DEFAULT_TENANT, Gallery
from faceatlas.gallery.index import ANN_MIN_FACES, ExactIndex, HNSWIndex, build_index
from faceatlas.gallery.types import (
    CollectionInfo,
    EnrolReport,
    FaceInfo,
    Match,
    Page,
    ReembedReport,
    SubjectInfo,
    Verification,
)

__all__ = [
    "ANN_MIN_FACES",
    "DEFAULT_TENANT",
    "AlreadyExists",
    "CollectionInfo",
    "EnrolReport",
    "ExactIndex",
    "FaceInfo",
    "Gallery",
    "HNSWIndex",
    "Match",
    "NotFound",
    "Page",
    "ReembedReport",
    "SubjectInfo",
    "Verification",
    "build_index",
]
