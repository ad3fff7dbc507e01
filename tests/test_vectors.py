"""The engine's one check of vectors from outside, one L2 normalisation and one brute-force top-k,
used by every layer."""

from __future__ import annotations

import numpy as np
import pytest

from faceatlas.engine import Embedding, check_vectors, l2_normalize, top_k
from faceatlas.errors import InvalidArgument


def test_l2_normalize_rows_and_zero_vectors():
    rows = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert rows.dtype == np.float32 and np.allclose(rows, [[0.6, 0.8], [0.0, 0.0]])
    assert l2_normalize(np.array([0.0, 2.0])).shape == (1, 2)


def test_top_k_sorted_with_ids_and_k_beyond_the_columns():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.2, 0.8, 0.1]], np.float32)
    sims, ids = top_k(scores, np.array([10, 11, 12, 13]), 2)
    assert ids.tolist() == [[11, 13], [12, 10]] and np.allclose(sims, [[0.9, 0.7], [0.8, 0.4]])
    sims, ids = top_k(scores[0], np.arange(4), 10)  # one query, k larger than the candidates
    assert ids.tolist() == [[1, 3, 2, 0]] and sims.shape == (1, 4)


@pytest.mark.parametrize("values", [
    [True] * 128,  # booleans were cast to 1.0
    [0.5] * 127 + [False],  # one among numbers (numpy casts a mixed list to float)
    ["0.5"] * 128,  # number strings were parsed
    [0.5] * 127 + ["1e3"],
    [[0.5] * 64, ["0.5"] * 64],
    np.ones(128, bool),
    np.array(["0.5"] * 128),
    [0.5] * 127 + [1 + 2j],
    [0.5] * 127 + [None],
])
def test_an_embedding_is_numbers_not_booleans_or_strings(values):
    with pytest.raises(InvalidArgument, match="number"):
        check_vectors(values)
    with pytest.raises(InvalidArgument, match="number"):
        Embedding.parse(values if not isinstance(values, np.ndarray) else values.tolist(), "any")


def test_numbers_of_any_kind_pass_the_check():
    ints = check_vectors([1, 2, 3] * 40 + [np.float32(0.5), np.int64(2), np.float64(1e-3)] + [0] * 5)
    assert ints.dtype == np.float32 and ints.shape == (1, 128)
    assert check_vectors(np.arange(1, 9, dtype=np.uint8).reshape(2, 4)).shape == (2, 4)
    assert check_vectors([np.ones(4, np.float32), np.full(4, 2.0)]).tolist() == [[1.0] * 4, [2.0] * 4]
    assert Embedding.parse([0.25] * 128, "any").vector.dtype == np.float32


@pytest.mark.parametrize("depth", [40, 900])
def test_a_deeply_nested_list_is_refused_not_a_crash(depth):
    """numpy refuses more than 64 dimensions with a RuntimeError (and deep lists recurse): both are
    an invalid embedding (422), never a 500 (the no-500 fuzz's ``deep_embedding`` body)."""
    nested: object = 1.0
    for _ in range(depth):
        nested = [nested]
    with pytest.raises(InvalidArgument):
        Embedding.parse(nested, "r")
