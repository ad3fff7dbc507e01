"""A collection holds one embedding space: vectors of another model are refused even when they
have the same length (dlib and MobileFaceNet are both 128-d), in search, verify and the video
matcher that searches the gallery."""

from __future__ import annotations

import pytest

from faceatlas.engine import Embedding, ModelMismatch
from faceatlas.gallery import Gallery
from faceatlas.video.identity import GalleryMatcher


def test_vectors_of_another_model_are_refused(enrolled: Gallery, test_dir, fast_analyzer, dlib_analyzer):
    probe = test_dir / "obama1.jpg"
    own, foreign = fast_analyzer.analyze_one(probe), dlib_analyzer.analyze_one(probe)
    assert len(own.embedding) == len(foreign.embedding) == 128
    assert enrolled.search("people", own, k=1)[0].external_id == "obama"
    assert enrolled.verify("people", "obama", own.as_embedding(), threshold=0.3).match
    for query in (foreign, foreign.as_embedding(), Embedding(own.embedding, foreign.recognizer_id)):
        with pytest.raises(ModelMismatch):
            enrolled.search("people", query, k=1)
        with pytest.raises(ModelMismatch):
            enrolled.verify("people", "obama", query, threshold=0.3)
    matcher = GalleryMatcher(enrolled, "people", threshold=0.3)
    assert matcher.match(own.as_embedding()).external_id == "obama"
    with pytest.raises(ModelMismatch):
        matcher.match(foreign.as_embedding())
    with pytest.raises(TypeError):  # a bare vector does not say which model made it
        enrolled.search("people", own.embedding, k=1)
