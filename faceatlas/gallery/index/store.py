"""Choosing, building, saving and loading a collection's index. The database is the source of
truth; an index only ever holds (face id, vector, subject) copied from it, persisted atomically
together with the collection ``revision`` it reflects."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceatlas.gallery.index.base import (
    _FORMAT,
    ANN_MIN_FACES,
    Storage,
    VectorIndex,
)
from faceatlas.gallery.index.exact import ExactIndex
from faceatlas.gallery.index.templates import TemplateIndex

# Every kind of index that can be saved, by the ``kind`` recorded in its file.
INDEX_KINDS: dict[str, type[VectorIndex]] = {ExactIndex.kind: ExactIndex, TemplateIndex.kind: TemplateIndex}


def empty_index(faces: int, dim: int, *, storage: Storage = "float32", ann_min_faces: int = ANN_MIN_FACES,
                **template_options: Any) -> VectorIndex:
    """An empty index of the right kind for ``faces`` faces: exact below ``ann_min_faces``,
    templates (built with ``template_options``) from there on."""
    if faces < ann_min_faces:
        return ExactIndex(dim, storage)
    return TemplateIndex(dim, storage, **template_options)


def build_index(ids: np.ndarray, vectors: np.ndarray, dim: int, groups: np.ndarray | None = None,
                **options: Any) -> VectorIndex:
    """The right index (see :func:`empty_index`) holding these faces; ``groups`` is the subject of each."""
    index = empty_index(len(ids), dim, **options)
    index.add(ids, vectors, groups)
    return index


@dataclass
class IndexState:
    """A collection's index and the database state it reflects."""

    index: VectorIndex
    revision: int
    meta: dict[str, Any] = field(default_factory=dict)


def _graph_files(path: Path) -> list[Path]:
    """Graph files of the index at ``path``, including the usearch ones of index format 2."""
    return [*path.parent.glob(f"{path.name}.*.faiss"), *path.parent.glob(f"{path.name}.*.usearch")]


def save_index(state: IndexState, path: Path) -> None:
    """Write index and revision to ``path`` atomically (tmp, fsync, rename). A template index's
    graph goes to a fresh ``<path>.<token>.faiss`` file named in the metadata; older graph files
    are deleted. A save that fails (a full or read-only folder: :class:`OSError`) leaves the file
    at ``path`` as it was and takes away what it wrote (its temporary file, its graph file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    index = state.index
    meta = {"format": _FORMAT, "kind": index.kind, "dim": index.dim, "storage": index.storage,
            "revision": state.revision, **state.meta}
    # the process id first (a killed save's file is told by it), then the id of the saving object:
    # two caches of one process on one folder (a server's gallery and an app's) never share a file
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{id(state):x}.tmp")

    def write(arrays: dict[str, np.ndarray]) -> None:
        with open(tmp, "wb") as handle:
            columns: dict[str, Any] = {**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
            np.savez(handle, **columns)
            handle.flush()
            os.fsync(handle.fileno())

    try:
        graph_file = index.persist(path, meta, write)
        os.replace(tmp, path)
    except BaseException:
        written = meta.get("graph")  # named by persist before it wrote the graph: never path's own
        if isinstance(written, str) and written != state.meta.get("graph"):
            with contextlib.suppress(OSError):
                path.with_name(written).unlink(missing_ok=True)
        raise
    finally:  # interrupted (Ctrl-C, SIGTERM), the half-written file goes (a killed process's: next load)
        tmp.unlink(missing_ok=True)
    for stale in _graph_files(path):
        if stale != graph_file:
            stale.unlink(missing_ok=True)


def delete_index(path: Path) -> None:
    """Remove the index saved at ``path`` and its graph files."""
    path.unlink(missing_ok=True)
    for graph_file in _graph_files(path):
        graph_file.unlink(missing_ok=True)


def read_index_meta(path: Path) -> dict[str, Any] | None:
    """What the index file at ``path`` records of itself (format, kind, ``revision``, the
    collection's identity), read without its vectors; None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, io.UnsupportedOperation):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == _FORMAT else None


def read_index_ids(path: Path) -> np.ndarray | None:
    """The face ids the index file at ``path`` holds (its ``ids`` column alone, no vectors), or None
    when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["ids"], dtype=np.int64)
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, io.UnsupportedOperation):
        return None


def load_index(path: Path) -> IndexState | None:
    """The index saved at ``path``, or None when it is missing or unreadable (then rebuild)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != _FORMAT:
                return None
            kind = INDEX_KINDS.get(meta["kind"])
            index = kind.restore(path, meta, data) if kind is not None else None
            if index is None:
                return None
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, io.UnsupportedOperation):
        return None
    revision = meta.pop("revision")
    for key in ("format", "kind", "dim", "storage", "graph", "expansion_search"):
        meta.pop(key, None)
    return IndexState(index, revision, meta)
