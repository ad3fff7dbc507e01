"""The vector indexes on their own: exact vs FAISS IVF, removal, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceatlas.gallery.index import (
    ExactIndex,
    IndexState,
    IVFIndex,
    build_index,
    load_index,
    normalize_rows,
    save_index,
)


def _clustered(identities: int, per_identity: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = normalize_rows(rng.normal(size=(identities, dim)))
    faces = np.repeat(centres, per_identity, axis=0) + rng.normal(scale=0.07, size=(identities * per_identity, dim))
    return normalize_rows(faces), np.arange(identities * per_identity, dtype=np.int64) + 1


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_ivf_agrees_with_exact(storage: str) -> None:
    vectors, ids = _clustered(4000, 5, 128)
    exact = build_index(ids, vectors, 128, storage=storage, ann_min_faces=10**9)
    ivf = build_index(ids, vectors, 128, storage=storage, ann_min_faces=1000)
    assert isinstance(exact, ExactIndex) and isinstance(ivf, IVFIndex)
    queries = vectors[::97]
    _, exact_ids = exact.search(queries, 10)
    _, ivf_ids = ivf.search(queries, 10)
    assert (exact_ids[:, 0] == ivf_ids[:, 0]).mean() >= 0.99
    assert np.array_equal(exact_ids[:, 0], ids[::97])


@pytest.mark.parametrize("ann", [False, True])
def test_remove_and_persist(tmp_path: Path, ann: bool) -> None:
    vectors, ids = _clustered(500, 4, 64, seed=1)
    index = build_index(ids, vectors, 64, ann_min_faces=1000 if ann else 10**9)
    assert index.remove(ids[:4]) == 4 and len(index) == 1996
    _, found = index.search(vectors[:4], 5)
    assert not np.isin(found, ids[:4]).any()
    path = tmp_path / "i.npz"
    save_index(IndexState(index, 42, {"recognizer_id": "r"}), path)
    loaded = load_index(path)
    assert loaded is not None and loaded.revision == 42 and loaded.meta == {"recognizer_id": "r"}
    assert loaded.index.kind == index.kind and np.array_equal(np.sort(loaded.index.ids()), ids[4:])
    assert np.array_equal(loaded.index.search(vectors[10:12], 3)[1], index.search(vectors[10:12], 3)[1])


def test_small_and_empty_searches_pad() -> None:
    index = ExactIndex(8)
    sims, ids = index.search(np.ones(8), 3)
    assert ids.tolist() == [[-1, -1, -1]] and np.isneginf(sims).all()
    index.add(np.array([5]), normalize_rows(np.ones((1, 8))))
    sims, ids = index.search(normalize_rows(np.ones((1, 8))), 3)
    assert ids.tolist() == [[5, -1, -1]] and sims[0, 0] == pytest.approx(1.0)


def test_unreadable_index_file_means_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not an index")
    assert load_index(path) is None
