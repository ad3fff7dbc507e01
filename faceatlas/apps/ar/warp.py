"""Face-shape warps (slim face, big eyes) by mesh-based piecewise-affine warping.

A subset of the mesh (face oval, eye contours, lips, nose) and a fixed ring around the face are
triangulated (SciPy's Delaunay) at their *moved* positions; each output pixel takes its colour from
the same barycentric place in the triangle's original position: one affine map per triangle. The
map is computed on a grid 4x coarser than the pixels (triangles found by drawing them, numbered,
on that grid; the map is linear inside each triangle) and applied with ``cv2.remap``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from faceatlas.apps.ar.tracking import ArFace

OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
        152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
EYES = ((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
        (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466))
# Fixed points around each eye (brows, upper cheek) so that the eye warp stays local.
EYE_RINGS = ((70, 63, 105, 66, 107, 55, 193, 245, 128, 121, 120, 119, 118, 117, 111, 143, 156),
             (300, 293, 334, 296, 336, 285, 417, 465, 357, 350, 349, 348, 347, 346, 340, 372, 383))
INNER = (1, 4, 5, 6, 168, 197, 195, 0, 17, 61, 291, 13, 14, 199, 200)
GRID = 4


class Warp:
    """Slim face (``slim``: jaw and cheeks pulled toward the face's vertical axis by that fraction of
    their distance to it) and big eyes (``big_eyes``: eye contours scaled up from the eye centre)."""

    def __init__(self, slim: float = 0.08, big_eyes: float = 0.25) -> None:
        self.slim, self.big_eyes = slim, big_eyes

    def targets(self, face: ArFace) -> tuple[np.ndarray, np.ndarray]:
        """Control points (N, 2): where they are and where they go (the ring around the face stays)."""
        lm = face.landmarks
        centre = lm[list(OVAL)].mean(axis=0)
        ring = centre + (lm[list(OVAL)] - centre) * 1.35
        src = [lm[list(OVAL)], lm[list(INNER)], ring]
        dst = [self._slimmed(lm, centre), lm[list(INNER)], ring]
        for eye, eye_ring in zip(EYES, EYE_RINGS):
            points = lm[list(eye)]
            eye_centre = points.mean(axis=0)
            src += [points, lm[list(eye_ring)]]
            dst += [eye_centre + (points - eye_centre) * (1.0 + self.big_eyes), lm[list(eye_ring)]]
        return np.vstack(src), np.vstack(dst)

    def _slimmed(self, lm: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Oval points moved toward the line through the forehead (10) and the chin (152), the lower
        face most (the jaw), the forehead not at all."""
        oval = lm[list(OVAL)]
        top, chin = lm[10], lm[152]
        axis = (chin - top) / max(float(np.linalg.norm(chin - top)), 1e-6)
        rel = oval - top
        along = rel @ axis
        across = rel - np.outer(along, axis)
        weight = np.clip((along / max(float(np.linalg.norm(chin - top)), 1e-6) - 0.3) / 0.5, 0.0, 1.0)
        return oval - across * (self.slim * weight)[:, None]

    def apply(self, frame: np.ndarray, faces: Sequence[ArFace]) -> np.ndarray:
        for face in faces:
            self._one(frame, face)
        return frame

    def _one(self, frame: np.ndarray, face: ArFace) -> None:
        src, dst = self.targets(face)
        height, width = frame.shape[:2]
        x1, y1 = np.floor(np.maximum(src.min(axis=0), 0)).astype(int)
        x2, y2 = np.ceil(np.minimum(src.max(axis=0), (width - 1, height - 1))).astype(int)
        if x2 - x1 < 8 or y2 - y1 < 8:
            return
        corners = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]], np.float64)
        src, dst = np.vstack([src, corners]), np.vstack([dst, corners])
        from scipy.spatial import Delaunay  # the optional extra 'ar'

        try:
            triangles = Delaunay(dst).simplices  # (n, 3) vertex indices
        except Exception:  # noqa: BLE001  # degenerate (collinear) points: leave the face as it is
            return
        gx, gy = np.meshgrid(np.arange(x1, x2 + GRID, GRID, dtype=np.float64),
                             np.arange(y1, y2 + GRID, GRID, dtype=np.float64))
        grid = np.column_stack([gx.ravel(), gy.ravel()])
        # which triangle covers each grid point: the triangles drawn with their numbers
        corners_dst = dst[triangles]  # (n, 3, 2)
        label = np.full(gx.shape, -1, np.int32)
        for k, tri in enumerate(np.round((corners_dst - (x1, y1)) / GRID).astype(np.int32)):
            cv2.fillConvexPoly(label, tri, k)
        edges = np.stack([corners_dst[:, 0] - corners_dst[:, 2], corners_dst[:, 1] - corners_dst[:, 2]], axis=2)
        usable = np.abs(np.linalg.det(edges)) > 1e-6
        inverse = np.zeros_like(edges)
        inverse[usable] = np.linalg.inv(edges[usable])
        which = label.ravel()
        inside = (which >= 0) & usable[np.maximum(which, 0)]
        k = which[inside]
        # barycentric coordinates in the moved triangle, the same place in the original one
        b01 = np.einsum("nij,nj->ni", inverse[k], grid[inside] - corners_dst[k, 2])
        bary = np.column_stack([b01, 1.0 - b01.sum(axis=1)])
        mapped = grid.copy()
        mapped[inside] = np.einsum("ni,nij->nj", bary, src[triangles[k]])
        # the displacement (zero on the fixed ring) is smooth: resized to the pixels, added to them
        shift = (mapped - grid).reshape(*gx.shape, 2).astype(np.float32)
        size = (x2 - x1 + 1, y2 - y1 + 1)
        shift = cv2.resize(shift, size, interpolation=cv2.INTER_LINEAR)
        px, py = np.meshgrid(np.arange(x1, x2 + 1, dtype=np.float32), np.arange(y1, y2 + 1, dtype=np.float32))
        map_x, map_y = px + shift[:, :, 0], py + shift[:, :, 1]
        frame[y1:y2 + 1, x1:x2 + 1] = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR,
                                                borderMode=cv2.BORDER_REPLICATE)
