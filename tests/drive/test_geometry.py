"""Geometry and time-window signals of SenseDrive on constructed inputs with known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceatlas.apps.drive.geometry import (
    IMAGE_LEFT_EYE,
    IMAGE_LEFT_IRIS,
    IMAGE_RIGHT_EYE,
    IMAGE_RIGHT_IRIS,
    MESH_POINTS_WITH_IRIS,
    MOUTH_CORNERS,
    MOUTH_INNER,
    POSE_LANDMARKS,
    POSE_MODEL_MM,
    eye_aspect_ratio,
    eye_aspect_ratios,
    head_pose,
    iris_offset,
    mouth_aspect_ratio,
)
from faceatlas.apps.drive.signals import Calibrator, SlidingShare, Sustained, WindowedCount
from faceatlas.engine import Pose
from faceatlas.engine.geometry import _FACE_3D, camera_matrix, estimate_pose, pose_from_rotation, rotation_from_pose


def eye(x: float, y: float, width: float, height: float) -> np.ndarray:
    """Six EAR points p1..p6 of an eye at (x, y) with the given corner distance and lid opening."""
    w, h = width / 2, height / 2
    return np.array(
        [[x - w, y], [x - w / 3, y - h], [x + w / 3, y - h], [x + w, y], [x + w / 3, y + h], [x - w / 3, y + h]]
    )


def test_eye_aspect_ratio_known_values() -> None:
    assert eye_aspect_ratio(eye(0, 0, 10, 4)) == pytest.approx(0.4)
    assert eye_aspect_ratio(eye(50, 20, 30, 9)) == pytest.approx(0.3)
    assert eye_aspect_ratio(eye(0, 0, 10, 0)) == 0.0
    assert eye_aspect_ratio(np.zeros((6, 2))) == 0.0


def test_eye_and_mouth_ratios_from_mesh_indices() -> None:
    landmarks = np.zeros((MESH_POINTS_WITH_IRIS, 2))
    landmarks[list(IMAGE_LEFT_EYE)] = eye(100, 100, 30, 9)
    landmarks[list(IMAGE_RIGHT_EYE)] = eye(200, 100, 30, 3)[[3, 2, 1, 0, 5, 4]]  # mirrored order
    assert eye_aspect_ratios(landmarks) == pytest.approx((0.3, 0.1))
    landmarks[list(MOUTH_CORNERS)] = [[120, 200], [180, 200]]
    landmarks[list(MOUTH_INNER)] = [[150, 185], [150, 215]]
    assert mouth_aspect_ratio(landmarks) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "pose",
    [
        Pose(0, 0, 0),
        Pose(25, 0, 0),
        Pose(-40, 0, 0),
        Pose(0, 15, 0),
        Pose(0, -20, 0),
        Pose(0, 0, 12),
        Pose(30, -10, 5),
        Pose(-15, 20, -8),
    ],
)
def test_head_pose_recovers_known_rotation(pose: Pose) -> None:
    width, height = 1280, 720
    rvec, _ = cv2.Rodrigues(rotation_from_pose(pose))
    projected, _ = cv2.projectPoints(
        POSE_MODEL_MM, rvec, np.array([0.0, 0.0, 1500.0]), camera_matrix(width, height), None
    )
    landmarks = np.zeros((MESH_POINTS_WITH_IRIS, 2))
    landmarks[list(POSE_LANDMARKS)] = projected.reshape(-1, 2)
    found = head_pose(landmarks, width, height)
    assert found is not None
    assert (found.yaw, found.pitch, found.roll) == pytest.approx((pose.yaw, pose.pitch, pose.roll), abs=0.5)


def test_head_pose_signs_follow_the_image() -> None:
    """yaw > 0 moves the nose to the image's right, pitch > 0 moves it up, roll > 0 turns clockwise."""
    camera = camera_matrix(640, 480)

    def project(pose: Pose) -> np.ndarray:
        rvec, _ = cv2.Rodrigues(rotation_from_pose(pose))
        return cv2.projectPoints(POSE_MODEL_MM, rvec, np.array([0.0, 0.0, 1500.0]), camera, None)[0].reshape(-1, 2)

    def nose_from_eyes(pose: Pose) -> np.ndarray:
        points = project(pose)
        return points[0] - (points[2] + points[3]) / 2

    front = nose_from_eyes(Pose(0, 0, 0))
    assert nose_from_eyes(Pose(20, 0, 0))[0] > front[0] + 10
    assert nose_from_eyes(Pose(0, 20, 0))[1] < front[1] - 10
    tilted = project(Pose(0, 0, 20))
    assert tilted[3, 1] > tilted[2, 1]  # image-right eye corner drops: clockwise in the image


def test_rotation_round_trip() -> None:
    pose = Pose(33.0, -12.0, 7.0)
    back = pose_from_rotation(rotation_from_pose(pose))
    assert (back.yaw, back.pitch, back.roll) == pytest.approx((33.0, -12.0, 7.0))


def test_iris_offset() -> None:
    landmarks = np.zeros((MESH_POINTS_WITH_IRIS, 2))
    landmarks[list(IMAGE_LEFT_EYE)] = eye(100, 100, 40, 12)
    landmarks[list(IMAGE_RIGHT_EYE)] = eye(200, 100, 40, 12)
    landmarks[[IMAGE_LEFT_IRIS, IMAGE_RIGHT_IRIS]] = [[100, 100], [200, 100]]
    assert iris_offset(landmarks) == pytest.approx((0.0, 0.0))
    landmarks[[IMAGE_LEFT_IRIS, IMAGE_RIGHT_IRIS]] = [[110, 104], [210, 104]]
    assert iris_offset(landmarks) == pytest.approx((0.5, 0.2))


def test_perclos_window_is_time_weighted_and_slides() -> None:
    perclos, dt = SlidingShare(60.0), 0.1
    for step in range(600):  # 60 s at 10 Hz, eyes closed for the 9 s from t = 20 s
        t = (step + 1) * dt
        perclos.add(t, dt, 20.0 < t <= 29.0)
    assert perclos.covered_s == pytest.approx(60.0)
    assert perclos.share == pytest.approx(0.15)
    for step in range(600, 700):  # 10 s more, eyes open: the closure is still in the window
        perclos.add((step + 1) * dt, dt, False)
    assert perclos.share == pytest.approx(0.15)
    for step in range(700, 900):  # once t passes 89 s the closed stretch has left the window
        perclos.add((step + 1) * dt, dt, False)
    assert perclos.share == pytest.approx(0.0)


def test_sustained_blinks_with_hysteresis() -> None:
    blink = Sustained(0.5, 0.6, above=False)
    openness = [1.0, 0.9, 0.4, 0.1, 0.55, 0.3, 0.7, 1.0]  # 0.55 is inside the hysteresis band
    episodes = [blink.update(i * 0.04, v) for i, v in enumerate(openness)]
    finished = [e for e in episodes if e is not None]
    assert len(finished) == 1
    assert finished[0].start == pytest.approx(0.08) and finished[0].duration == pytest.approx(0.16)
    blink.update(1.0, 0.1)
    assert blink.running_for(1.5) == pytest.approx(0.5)
    assert blink.update(1.6, None) is None and blink.running_for(2.0) == 0.0  # a gap cancels


def test_windowed_count_and_calibrator() -> None:
    count = WindowedCount(60.0)
    for t in (1.0, 30.0, 59.0):
        count.add(t)
    assert count.count(60.0) == 3 and count.count(61.5) == 2
    calibrator = Calibrator(1.0)
    samples = [(0.3, 1.0, -2.0)] * 21 + [(0.05, 40.0, 10.0)] * 4  # a blink and a glance do not move medians
    results = [calibrator.add(0.04, *s) for s in samples]
    assert results[-2] is None and results[-1] is not None  # ready after 25 x 0.04 s = 1 s
    assert (results[-1].open_ear, results[-1].yaw, results[-1].pitch) == (0.3, 1.0, -2.0)


@pytest.mark.parametrize("pose", [Pose(0, 0, 0), Pose(25, 0, 0), Pose(-30, 0, 0), Pose(0, 15, 0), Pose(20, -10, 5)])
def test_engine_and_drive_share_one_pose_convention(pose: Pose) -> None:
    """The engine's 5-keypoint pose and the drive's mesh pose solve with the same camera and the
    same angle convention: the engine recovers a known rotation of its 5-point face with the drive's signs."""
    width, height = 640, 480
    rvec, _ = cv2.Rodrigues(rotation_from_pose(pose))
    projected, _ = cv2.projectPoints(_FACE_3D, rvec, np.array([0.0, 0.0, 600.0]), camera_matrix(width, height), None)
    found = estimate_pose(projected.reshape(-1, 2), (height, width))
    assert (found.yaw, found.pitch, found.roll) == pytest.approx((pose.yaw, pose.pitch, pose.roll), abs=2.0)
