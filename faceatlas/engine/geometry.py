"""Face geometry from 5 keypoints: alignment to the ArcFace template, head pose, NMS."""

from __future__ import annotations

import cv2
import numpy as np

from faceatlas.engine.face import Pose

# The standard 112x112 ArcFace template (left eye, right eye, nose, left mouth, right mouth).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)

# A generic 3D face for the same 5 points (x right, y down, z towards the camera): x and y are the
# template's, centred on the nose and scaled to millimetres (64 mm between the eyes); depths are
# average anthropometric offsets behind the nose tip. A frontal template face has pose (0, 0, 0).
_FACE_3D = np.column_stack(
    [(ARCFACE_TEMPLATE - ARCFACE_TEMPLATE[2]) * (64.0 / 35.24), np.array([-30.0, -30.0, 0.0, -25.0, -25.0])]
).astype(np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 similarity (rotation, uniform scale, translation) mapping src onto dst.

    Closed-form Umeyama fit, the same estimate insightface uses; OpenCV only offers robust
    (RANSAC/LMEDS) variants, which move the crop when one keypoint is noisy.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / src_c.var(axis=0).sum())
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_face(image: np.ndarray, keypoints: np.ndarray, size: int = 112) -> np.ndarray:
    """The ``size`` x ``size`` crop of ``image`` aligned on the ArcFace template."""
    template = ARCFACE_TEMPLATE * (size / 112.0)
    matrix = similarity_transform(keypoints, template)
    return cv2.warpAffine(image, matrix, (size, size), borderValue=0.0)


def estimate_pose(keypoints: np.ndarray, image_size: tuple[int, int]) -> Pose:
    """Head pose from 5 keypoints by PnP against a generic 3D face; a coarse estimate (±10°)."""
    height, width = image_size
    focal = float(max(height, width))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    points = np.asarray(keypoints, dtype=np.float64).reshape(5, 1, 2)
    ok, rvec, _ = cv2.solvePnP(_FACE_3D, points, camera, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        return Pose(0.0, 0.0, 0.0)
    rotation, _ = cv2.Rodrigues(rvec)
    pitch, yaw, roll = _euler_degrees(rotation)
    return Pose(yaw=yaw, pitch=pitch, roll=roll)


def _euler_degrees(rotation: np.ndarray) -> tuple[float, float, float]:
    sy = float(np.hypot(rotation[0, 0], rotation[1, 0]))
    pitch = float(np.degrees(np.arctan2(-rotation[2, 1], rotation[2, 2])))
    yaw = float(np.degrees(np.arctan2(rotation[2, 0], sy)))
    roll = float(np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0])))
    return pitch, -yaw, roll


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (OpenCV's implementation)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, iou_threshold)
    return np.asarray(keep, dtype=np.int64).reshape(-1)
