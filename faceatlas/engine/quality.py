"""A face quality score in [0, 1] for choosing enrolment photos and the best frame of a track.

It multiplies four factors, each 1.0 when good enough for recognition: detector confidence,
face size (inter-ocular distance), frontal pose, and sharpness of the aligned crop. It is a
ranking heuristic, not a calibrated probability.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceatlas.engine.face import Pose

GOOD_EYE_DISTANCE_PX = 40.0
GOOD_SHARPNESS = 150.0
MAX_USEFUL_YAW = 75.0
MAX_USEFUL_PITCH = 60.0


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the crop's grey image (higher is sharper)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def quality_score(det_score: float, keypoints: np.ndarray, pose: Pose, crop: np.ndarray) -> float:
    """The product of confidence, size, pose and sharpness factors, each clipped to [0, 1]."""
    eye_distance = float(np.linalg.norm(keypoints[1] - keypoints[0]))
    size = min(1.0, eye_distance / GOOD_EYE_DISTANCE_PX)
    frontal = max(0.0, 1.0 - abs(pose.yaw) / MAX_USEFUL_YAW) * max(0.0, 1.0 - abs(pose.pitch) / MAX_USEFUL_PITCH)
    sharp = min(1.0, sharpness(crop) / GOOD_SHARPNESS)
    confidence = min(1.0, max(0.0, det_score))
    return float(confidence * size * frontal * np.sqrt(sharp))
