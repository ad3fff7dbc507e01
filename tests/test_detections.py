"""One detection type for faces and persons: columns validated together, rows selected together,
and a bridge to supervision for tracking and zones."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from faceatlas.engine import Detections
from faceatlas.errors import InvalidArgument


def _faces() -> Detections:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 30, 30], [5, 5, 25, 15]], np.float32)
    keypoints = np.arange(3 * 5 * 2, dtype=np.float32).reshape(3, 5, 2)
    return Detections(boxes, [0.9, 0.8, 0.7], keypoints, data={"track": np.array([7, 8, 9])})


def test_columns_are_validated_together():
    with pytest.raises(InvalidArgument, match="scores has 2 rows"):
        Detections(np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(InvalidArgument, match="keypoints must be N x 5 x 2"):
        Detections(np.zeros((1, 4)), np.zeros(1), np.zeros((1, 4, 2)))
    with pytest.raises(InvalidArgument, match="data\\['track'\\]"):
        Detections(np.zeros((2, 4)), np.zeros(2), data={"track": np.zeros(3)})
    found = Detections([[1, 2, 3, 4]], [0.5])
    assert found.boxes.dtype == np.float32 and found.boxes.shape == (1, 4) and found.keypoints is None


def test_mask_slice_and_index_select_every_column():
    faces = _faces()
    picked = faces[faces.scores > 0.75]
    assert len(picked) == 2 and picked.data["track"].tolist() == [7, 8]
    assert np.array_equal(picked.keypoints, faces.keypoints[:2])
    assert faces[1].boxes.tolist() == [[0, 0, 30, 30]] and faces[1].data["track"].tolist() == [8]
    assert faces[1:].scores.tolist() == pytest.approx([0.8, 0.7])
    assert faces[[2, 0]].data["track"].tolist() == [9, 7]
    with pytest.raises(InvalidArgument):
        faces[np.array([True, False])]


def test_sorted_by_area_and_merge():
    faces = _faces()
    largest = faces.sorted_by_area()
    assert largest.data["track"].tolist() == [8, 9, 7] and len(faces.sorted_by_area(1)) == 1
    both = Detections.merge([faces, faces[:1]])
    assert len(both) == 4 and both.data["track"].tolist() == [7, 8, 9, 7]
    assert len(Detections.empty()) == 0 and Detections.empty().keypoints.shape == (0, 5, 2)


def test_round_trip_through_supervision():
    faces = _faces()
    converted = faces.to_supervision(face=np.arange(3))
    assert isinstance(converted, sv.Detections) and len(converted) == 3
    assert converted.class_id.tolist() == [0, 0, 0] and converted.data["face"].tolist() == [0, 1, 2]
    back = Detections.from_supervision(converted[converted.confidence > 0.75])
    assert np.array_equal(back.boxes, faces.boxes[:2]) and back.data["track"].tolist() == [7, 8]


def test_detectors_return_the_one_type(examples, fast_analyzer, shared):
    from faceatlas.engine import PersonDetector

    photo = examples / "examples" / "two_people.jpg"
    faces = fast_analyzer.detect(photo)
    persons = PersonDetector(threads=1).detect(fast_analyzer.load(photo))
    assert isinstance(faces, Detections) and isinstance(persons, Detections)
    assert len(faces) == 2 and faces.keypoints.shape == (2, 5, 2)
    assert len(persons) >= 1 and persons.keypoints is None and set(persons.class_id.tolist()) == {0}


def test_min_face_runs_detection_smaller_and_finds_the_same_big_faces(examples):
    """FACEATLAS_MIN_FACE: a photo of big faces is detected on a reduced image (the same faces,
    boxes within a few pixels), a face below the stated size is not promised."""
    from faceatlas.engine import FaceAnalyzer
    from faceatlas.engine.detectors import DETECTABLE_FACE, detection_scale
    from faceatlas.settings import EngineSettings

    image_path = examples / "examples" / "two_people.jpg"
    default = FaceAnalyzer("scrfd-mbf", announce_license=False)
    reduced = FaceAnalyzer("scrfd-mbf", settings=EngineSettings(min_face=64), announce_license=False)
    image = default.load(image_path)
    height, width = image.shape[:2]
    assert detection_scale(height, width, 640, 64) == DETECTABLE_FACE / 64 < detection_scale(height, width, 640)
    ours, theirs = reduced.detector.detect(image), default.detector.detect(image)
    assert len(ours) == len(theirs) == 2
    ours_boxes, their_boxes = (d.boxes[d.boxes[:, 0].argsort()] for d in (ours, theirs))  # left to right
    overlap = np.diag(sv.box_iou_batch(ours_boxes, their_boxes))
    assert overlap.min() > 0.8, overlap
    assert EngineSettings(det_max_side=1024).det_max_side == 1024
    assert FaceAnalyzer("scrfd-mbf", settings=EngineSettings(det_max_side=1024),
                        announce_license=False).detector.max_side == 1024
