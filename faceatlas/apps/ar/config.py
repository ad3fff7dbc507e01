"""The knobs of AR face effects."""

from __future__ import annotations

from dataclasses import dataclass

from faceatlas.apps.drive import DriveConfig


@dataclass(frozen=True)
class ArConfig:
    max_faces: int = 4
    process_width: int = 1280  # frames wider than this are downscaled before Face Mesh
    min_face_confidence: float = 0.5
    # One Euro filter per landmark coordinate (pixels, seconds); tuned on a still night-IR driver frame
    # with camera noise (jitter 1.2 px raw -> 0.21 px) and a photo moving 6 px a frame (lag 0.6 frame,
    # settled 1 frame after it stops), see tests/ar/test_ar_tracking.py. A higher beta or d_cutoff
    # follows faster and jitters more (beta 0.1, d_cutoff 1: lag 0.24 frame, jitter 0.44 px).
    min_cutoff: float = 0.1
    beta: float = 0.05
    d_cutoff: float = 0.3
    lost_frames: int = 5  # a track unseen for more frames is dropped (its filter with it)

    def mesh_config(self) -> DriveConfig:
        return DriveConfig(max_faces=self.max_faces, process_width=self.process_width,
                           min_face_confidence=self.min_face_confidence)
