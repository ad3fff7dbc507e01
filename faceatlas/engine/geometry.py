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

# The 5 keypoints on a generic face in millimetres, OpenCV camera axes (x right, y down, z away from
# the camera: eyes and mouth corners lie behind the nose tip), nose tip at the origin, 64 mm between
# the eyes. x and y are the median keypoint shape of 298 LFW faces (eye line levelled, in units of
# the eye distance), where SCRFD-500M and dlib's 68-point landmarks agree within 0.03: nose tip
# 0.555 below the eye line, mouth corners 1.08 below it and 0.87 apart. (The ArcFace template puts
# the mouth 0.1 lower than detectors find it on real frontal faces, which tilted every frontal
# face's pitch.) Depths are average anthropometric offsets behind the nose tip. A face with the
# median shape has pose (0, 0, 0).
_IOD_MM = 64.0
_FACE_3D = np.array(
    [
        [-0.5 * _IOD_MM, -0.555 * _IOD_MM, 30.0],
        [0.5 * _IOD_MM, -0.555 * _IOD_MM, 30.0],
        [0.0, 0.0, 0.0],
        [-0.435 * _IOD_MM, 0.525 * _IOD_MM, 25.0],
        [0.435 * _IOD_MM, 0.525 * _IOD_MM, 25.0],
    ],
    dtype=np.float64,
)
_MOUTH_SHARE = 20  # the eyes and nose tip weigh 20 times a mouth corner in estimate_pose


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


def camera_matrix(width: int, height: int) -> np.ndarray:
    """The pinhole camera every head pose assumes: focal length = the longer image side, principal
    point at the centre."""
    focal = float(max(width, height))
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def rotation_from_pose(pose: Pose) -> np.ndarray:
    """The 3x3 rotation (camera axes) of ``pose``: R = Rz(roll) Ry(-yaw) Rx(-pitch)."""
    ax, ay, az = np.radians([-pose.pitch, -pose.yaw, pose.roll])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def pose_from_rotation(rotation: np.ndarray) -> Pose:
    """Inverse of :func:`rotation_from_pose`: yaw > 0 turns the nose to the image's right, pitch > 0
    looks up, roll > 0 tilts the head clockwise in the image."""
    r = np.asarray(rotation, dtype=np.float64)
    ax = np.arctan2(r[2, 1], r[2, 2])
    ay = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    az = np.arctan2(r[1, 0], r[0, 0])
    return Pose(yaw=float(-np.degrees(ay)), pitch=float(-np.degrees(ax)), roll=float(np.degrees(az)))


def frontal_guess(model_mm: np.ndarray, points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(rvec, tvec) of ``model_mm`` facing the camera, centred on ``points`` at the distance their
    spread implies: where the PnP solver starts."""
    model = np.asarray(model_mm, dtype=np.float64)
    image = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    focal = camera_matrix(width, height)[0, 0]
    model_spread = float(np.sqrt(((model[:, :2] - model[:, :2].mean(axis=0)) ** 2).sum(axis=1).mean()))
    image_spread = float(np.sqrt(((image - image.mean(axis=0)) ** 2).sum(axis=1).mean()))
    depth = focal * model_spread / max(image_spread, 1e-6)  # of the model's centroid
    centre = image.mean(axis=0) - np.array([width / 2.0, height / 2.0])
    offset = np.append(centre * depth / focal, depth) - model.mean(axis=0)
    return np.zeros((3, 1)), offset.reshape(3, 1)


def solve_pose(model_mm: np.ndarray, points: np.ndarray, width: int, height: int, *,
               guess: tuple[np.ndarray, np.ndarray] | None = None) -> Pose | None:
    """Head pose from image ``points`` of the 3D ``model_mm`` points (OpenCV axes) by iterative PnP
    with :func:`camera_matrix`, started from ``guess`` (rvec, tvec), by default from
    :func:`frontal_guess`. Starting upright keeps the solver out of the mirrored solution that
    near-planar faces allow (EPnP picked either: pitch +30 or -30 on the same frontal face). The
    one pose solver of the engine (5 keypoints) and of driver monitoring (6 mesh points)."""
    camera = camera_matrix(width, height)
    model = np.ascontiguousarray(model_mm, dtype=np.float64)
    image_points = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 1, 2)
    rvec, tvec = guess if guess is not None else frontal_guess(model, image_points, width, height)
    ok, rvec, _ = cv2.solvePnP(model, image_points, camera, None, np.array(rvec, dtype=np.float64),
                               np.array(tvec, dtype=np.float64), useExtrinsicGuess=True,
                               flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return None
    rotation, _ = cv2.Rodrigues(rvec)
    return pose_from_rotation(rotation)


def estimate_pose(keypoints: np.ndarray, image_size: tuple[int, int]) -> Pose:
    """Head pose from 5 keypoints by PnP against a generic 3D face; a coarse estimate (±10°).

    The mouth corners move with expression (a broad smile lifts them by about a tenth of the eye
    distance, which read as 25-30° of pitch down on smiling frontal faces), so they count
    1/20 of the eyes and nose tip (repeated points are integer weights of the least
    squares fit): enough to keep the solver on the upright solution, too little to tilt the head."""
    height, width = image_size
    rows = np.repeat(np.arange(5), [_MOUTH_SHARE, _MOUTH_SHARE, _MOUTH_SHARE, 1, 1])
    points = np.asarray(keypoints, dtype=np.float64).reshape(5, 2)
    return solve_pose(_FACE_3D[rows], points[rows], width, height) or Pose(0.0, 0.0, 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (OpenCV's implementation)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, iou_threshold)
    return np.asarray(keep, dtype=np.int64).reshape(-1)
