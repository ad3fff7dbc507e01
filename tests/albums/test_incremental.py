"""Incremental equals batch on real LFW embeddings (20 identities, 4 photos each): the faces added in 10
increments (new faces join people, or bridge two of them) score within 0.01 of one clustering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceatlas.apps.albums import Scores, assign, cluster, gate, score
from faceatlas.engine.evaluation import central_index


@pytest.fixture(scope="module")
def batch_and_steps(lfw: Path, fast_analyzer) -> tuple[Scores, Scores]:
    people = [p for p in sorted(lfw.iterdir()) if len(list(p.glob("*.jpg"))) >= 4][:20]
    vectors, truth = [], []
    for person in people:
        for photo in sorted(person.glob("*.jpg"))[:4]:
            image = fast_analyzer.load(photo)
            faces = fast_analyzer.analyze(image)
            if faces and gate(face := faces[central_index(faces, image.shape)]):
                vectors.append(face.embedding)
                truth.append(person.name)
    data, labels_true = np.stack(vectors), np.asarray(truth)
    threshold = fast_analyzer.threshold(1e-6)
    batch = score(cluster(data, threshold), labels_true)
    labels = np.full(len(data), -1, np.int64)
    for chunk in np.array_split(np.random.default_rng(0).permutation(len(data)), 10):
        placed = labels >= 0
        placement = assign(data[placed], labels[placed], data[chunk], threshold)
        for gone, kept in placement.merged.items():
            labels[labels == gone] = kept
        labels[chunk] = placement.labels
    return batch, score(labels, labels_true)


def test_ten_increments_score_within_001_of_one_batch(batch_and_steps: tuple[Scores, Scores]) -> None:
    batch, steps = batch_and_steps
    assert batch.bcubed_f > 0.95
    assert abs(steps.bcubed_f - batch.bcubed_f) <= 0.01
    assert abs(steps.pairwise_f - batch.pairwise_f) <= 0.01
    assert abs(steps.clusters - batch.clusters) <= 1
