"""Derived vector index of a collection: exact BLAS search for small sets (:class:`ExactIndex`),
and above that a FAISS HNSW graph over subject templates whose faces are then scored exactly
(:class:`TemplateIndex`), both behind the :class:`VectorIndex` protocol.

``base`` (protocol, constants, helpers) <- ``exact``, ``router`` (HNSW graph, code range,
projection) <- ``templates`` <- ``store`` (choose, build, save, load).
"""

from faceatlas.gallery.index.base import (
    ANN_MIN_FACES,
    DEFAULT_EXPANSION_SEARCH,
    HNSW_CONNECTIVITY,
    HNSW_EXPANSION_ADD,
    ROUTER_MIN_DIM,
    TEMPLATE_CANDIDATES,
    TEMPLATE_GROUP_SIZE,
    Storage,
    VectorIndex,
    router_dim,
)
from faceatlas.gallery.index.exact import ExactIndex
from faceatlas.gallery.index.router import HNSWIndex, code_range, principal_axes
from faceatlas.gallery.index.store import (
    IndexState,
    build_index,
    delete_index,
    empty_index,
    load_index,
    read_index_ids,
    read_index_meta,
    save_index,
)
from faceatlas.gallery.index.templates import TemplateIndex

__all__ = [
    "ANN_MIN_FACES",
    "DEFAULT_EXPANSION_SEARCH",
    "HNSW_CONNECTIVITY",
    "HNSW_EXPANSION_ADD",
    "ROUTER_MIN_DIM",
    "TEMPLATE_CANDIDATES",
    "TEMPLATE_GROUP_SIZE",
    "ExactIndex",
    "HNSWIndex",
    "IndexState",
    "Storage",
    "TemplateIndex",
    "VectorIndex",
    "build_index",
    "code_range",
    "delete_index",
    "empty_index",
    "load_index",
    "principal_axes",
    "read_index_ids",
    "read_index_meta",
    "router_dim",
    "save_index",
]
