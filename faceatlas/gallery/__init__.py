"""The gallery layer: tenants -> collections -> subjects -> faces, persisted with SQLAlchemy
(SQLite or PostgreSQL) and searched through a derived vector index (exact, or a FAISS HNSW
graph over subject templates)."""

from faceatlas.errors import AlreadyExists, NotFound
from faceatlas.gallery.exchange import read_header
from faceatlas.gallery.gallery import (
    DEFAULT_TENANT,
    Gallery,
    enrolled_photos,
    index_dir_for,
    mismatch_message,
    photo_source,
    source_crop,
)
from faceatlas.gallery.index import ANN_MIN_FACES, ExactIndex, TemplateIndex, build_index
from faceatlas.gallery.models import database_identity, migrate
from faceatlas.gallery.rules import (
    ID_MAX_LENGTH,
    ID_PATTERN,
    NAME_MAX_LENGTH,
    PAGE_MAX,
    ROW_ID_MAX,
    check_id,
    check_index_dir,
    check_limit,
    check_metadata,
    check_row_id,
    check_stored,
    check_tenant,
    check_text,
    parse_cursor,
    service_space,
    space_owner,
)
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
    "ID_MAX_LENGTH",
    "ID_PATTERN",
    "PAGE_MAX",
    "NAME_MAX_LENGTH",
    "ROW_ID_MAX",
    "AlreadyExists",
    "CollectionInfo",
    "EnrolReport",
    "ExactIndex",
    "FaceInfo",
    "Gallery",
    "Match",
    "NotFound",
    "Page",
    "ReembedReport",
    "SubjectInfo",
    "TemplateIndex",
    "Verification",
    "build_index",
    "check_id",
    "check_index_dir",
    "check_limit",
    "check_metadata",
    "check_stored",
    "check_tenant",
    "check_text",
    "check_row_id",
    "database_identity",
    "read_header",
    "parse_cursor",
    "enrolled_photos",
    "index_dir_for",
    "migrate",
    "mismatch_message",
    "photo_source",
    "service_space",
    "source_crop",
    "space_owner",
]
