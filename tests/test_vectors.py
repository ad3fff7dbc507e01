"""The engine's one L2 normalisation and one brute-force top-k, used by every layer."""

from __future__ import annotations

import numpy as np

from faceatlas.engine import l2_normalize, top_k


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
