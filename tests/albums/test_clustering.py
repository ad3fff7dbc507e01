"""The clustering rules on hand-made vectors: locks, cannot-links, and what an increment may join."""

from __future__ import annotations

import numpy as np

from faceatlas.apps.albums import assign, cluster
from faceatlas.engine import l2_normalize


def _vectors() -> np.ndarray:
    """a0, a1 close; b0 far from both; bridge between a1 and b0 (0.8 to each)."""
    e = np.eye(4, dtype=np.float32)
    a0, a1 = e[0], l2_normalize(e[0] + 0.1 * e[2])[0]
    b0 = l2_normalize(e[0] + 1.5 * e[1])[0]
    bridge = l2_normalize(a1 + b0)[0]
    return np.stack([a0, a1, b0, bridge])


def test_cannot_links_and_locks_win_over_similarity() -> None:
    v = _vectors()
    assert len(set(cluster(v[:2], 0.9).tolist())) == 1
    assert len(set(cluster(v[:2], 0.9, cannot=[(0, 1)]).tolist())) == 2
    locked = cluster(v[:3], 0.9, locks=np.array([-1, 7, 7]))
    assert locked[1] == locked[2] and locked[0] == locked[1]


def test_an_increment_joins_the_people_it_bridges_unless_kept_apart() -> None:
    v = _vectors()
    old, labels = v[:3], np.array([0, 0, 1])
    joined = assign(old, labels, v[3:], 0.7)
    assert joined.merged == {1: 0} and joined.labels.tolist() == [0]
    apart = assign(old, labels, v[3:], 0.7, blocked=[(0, 1)])
    assert apart.merged == {} and apart.labels[0] in (0, 1)
    named = assign(old, labels, v[3:], 0.7, exclusive=[0, 1])
    assert named.merged == {}
    alone = assign(old, labels, -v[3:], 0.7)
    assert alone.merged == {} and alone.labels.tolist() == [2]


def test_a_batch_never_joins_two_exclusive_groups() -> None:
    v = _vectors()
    assert len(set(cluster(v, 0.7).tolist())) == 1  # the bridge joins a and b
    apart = cluster(v, 0.7, exclusive=np.array([5, -1, 9, -1]))
    assert apart[0] == apart[1] and apart[0] != apart[2] and apart[3] in (apart[0], apart[2])
    one_group = cluster(v, 0.7, exclusive=np.array([5, -1, 5, -1]))
    assert len(set(one_group.tolist())) == 1
    locked = cluster(v, 0.7, locks=np.array([-1, 3, -1, 3]), exclusive=np.array([5, -1, 9, -1]))
    assert locked[1] == locked[3] == locked[0] != locked[2]
