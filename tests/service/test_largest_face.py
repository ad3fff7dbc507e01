"""``InferencePool.largest_face``: the largest face of a photo, as ``faces_and_crops`` and ``analyze``
with ``max_faces=1`` find it, and how many faces the photo holds (the console says "the largest of 2
faces" where it said "1 face")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from faceatlas.service.inference import InferencePool
from faceatlas.service.metrics import ServiceMetrics


@pytest.mark.parametrize("batching", [True, False])
def test_the_largest_face_is_the_one_max_faces_1_finds_with_the_count(fast_analyzer, examples: Path,
                                                                       batching: bool) -> None:
    group = (examples / "examples" / "two_people.jpg").read_bytes()
    alone = (examples / "tests" / "test_images" / "obama.jpg").read_bytes()
    pool = InferencePool(fast_analyzer, ServiceMetrics(), workers=1, batching=batching)

    async def ask() -> tuple:
        return await asyncio.gather(
            pool.largest_face(group, liveness=True, keep_crops=True), pool.analyze(group, liveness=True, max_faces=1),
            pool.faces_and_crops(group, max_faces=1, keep_crops=True), pool.largest_face(alone))

    try:
        largest, analysed, (enrolled, crops), single = asyncio.run(ask())
    finally:
        pool.close()
    assert (largest.found, len(largest.faces), single.found, len(single.faces)) == (2, 1, 1, 1)
    face, same = largest.faces[0], analysed[0]
    np.testing.assert_allclose(face.bbox, same.bbox, atol=1e-3)  # in the original photo's pixels
    np.testing.assert_allclose(face.embedding, same.embedding, atol=1e-5)
    np.testing.assert_allclose(face.embedding, enrolled[0].embedding, atol=1e-5)
    assert face.liveness is not None and same.liveness is not None
    assert face.liveness.score == pytest.approx(same.liveness.score, abs=1e-5)
    assert face.recognizer_id == same.recognizer_id and face.crop is None
    assert largest.crops == crops and isinstance(crops[0], bytes)
    assert single.crops == [None]  # no crop unless asked for
