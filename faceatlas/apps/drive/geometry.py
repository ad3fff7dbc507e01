"""Per-frame geometry on MediaPipe Face Mesh landmarks: eye and mouth opening, head pose, gaze.

Landmarks are an ``(N, 2)`` array of pixel coordinates in the 478-point Face Mesh topology
(468 mesh points + 10 iris points when ``refine_landmarks`` is on). "Left" and "right" below are
as seen in the image, so the image-left eye is the driver's right eye.
"""

from __future__ import annotations

import numpy as np

from faceatlas.engine.face import Pose
from faceatlas.engine.geometry import solve_pose

# Six points per eye for the eye aspect ratio (Soukupová & Čech 2016): corner, two upper lid
# points, corner, two lower lid points (p1..p6), in Face Mesh indices.
IMAGE_LEFT_EYE = (33, 160, 158, 133, 153, 144)
IMAGE_RIGHT_EYE = (263, 387, 385, 362, 380, 373)
# Iris centres (refined landmarks), paired with the eyes above.
IMAGE_LEFT_IRIS = 468
IMAGE_RIGHT_IRIS = 473
# Inner lips (upper, lower) and mouth corners for the mouth aspect ratio.
MOUTH_INNER = (13, 14)
MOUTH_CORNERS = (78, 308)

# A generic 3D face in millimetres, OpenCV camera axes (x right, y down, z away from the camera),
# so a face looking straight into the camera has the identity rotation.
POSE_LANDMARKS = (1, 152, 33, 263, 61, 291)
POSE_MODEL_MM = np.array(
    [
        [0.0, 0.0, 0.0],  # nose tip
        [0.0, 330.0, 65.0],  # chin
        [-225.0, -170.0, 135.0],  # image-left eye, outer corner
        [225.0, -170.0, 135.0],  # image-right eye, outer corner
        [-150.0, 150.0, 125.0],  # image-left mouth corner
        [150.0, 150.0, 125.0],  # image-right mouth corner
    ],
    dtype=np.float64,
)
MESH_POINTS_WITH_IRIS = 478


def eye_aspect_ratio(points: np.ndarray) -> float:
    """EAR of six eye points p1..p6: (|p2-p6| + |p3-p5|) / (2 |p1-p4|); about 0.3 open, near 0 closed."""
    p = np.asarray(points, dtype=np.float64)
    width = np.linalg.norm(p[0] - p[3])
    if width <= 0:
        return 0.0
    height = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
    return float(height / (2.0 * width))


def eye_aspect_ratios(landmarks: np.ndarray) -> tuple[float, float]:
    """(image-left eye, image-right eye) EAR from Face Mesh landmarks."""
    return (
        eye_aspect_ratio(landmarks[list(IMAGE_LEFT_EYE)]),
        eye_aspect_ratio(landmarks[list(IMAGE_RIGHT_EYE)]),
    )


def mouth_aspect_ratio(landmarks: np.ndarray) -> float:
    """Inner-lip opening over mouth width: about 0 closed, above ~0.6 for a yawn."""
    upper, lower = landmarks[MOUTH_INNER[0]], landmarks[MOUTH_INNER[1]]
    left, right = landmarks[MOUTH_CORNERS[0]], landmarks[MOUTH_CORNERS[1]]
    width = float(np.linalg.norm(left - right))
    return float(np.linalg.norm(upper - lower)) / width if width > 0 else 0.0


def head_pose(landmarks: np.ndarray, width: int, height: int) -> Pose | None:
    """Yaw/pitch/roll from six mesh points against a generic 3D face, by the engine's
    :func:`~faceatlas.engine.geometry.solve_pose` (which starts from an upright face, so it does not
    fall into the mirrored, upside-down solution that six points allow)."""
    image_points = np.ascontiguousarray(landmarks[list(POSE_LANDMARKS)], dtype=np.float64)
    if float(np.linalg.norm(image_points[2] - image_points[3])) <= 0:
        return None
    return solve_pose(POSE_MODEL_MM, image_points, width, height)


def iris_offset(landmarks: np.ndarray) -> tuple[float, float]:
    """Mean iris position in the eye openings, (horizontal, vertical), each about -1..1.

    0 is centred between the eye corners; +1 horizontal is the image-right corner, + vertical is
    downwards, both in units of half the eye width, measured along the eye's own axis (roll-free).
    """
    offsets = []
    for eye, iris in ((IMAGE_LEFT_EYE, IMAGE_LEFT_IRIS), (IMAGE_RIGHT_EYE, IMAGE_RIGHT_IRIS)):
        a, b = landmarks[eye[0]], landmarks[eye[3]]
        left, right = (a, b) if a[0] <= b[0] else (b, a)
        axis = right - left
        half = float(np.linalg.norm(axis)) / 2.0
        if half <= 0:
            continue
        along = axis / (2.0 * half)
        normal = np.array([-along[1], along[0]])
        rel = landmarks[iris] - (left + right) / 2.0
        offsets.append((float(rel @ along) / half, float(rel @ normal) / half))
    if not offsets:
        return 0.0, 0.0
    h, v = np.mean(offsets, axis=0)
    return float(h), float(v)
