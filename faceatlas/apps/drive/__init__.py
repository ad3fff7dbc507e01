"""SenseDrive: driver monitoring (eyes, blinks, PERCLOS, yawns, head pose, gaze, presence) on MediaPipe Face Mesh.

Needs the optional extra: ``pip install 'faceatlas[drive]'``.
"""

from faceatlas.apps.drive.config import DriveConfig
from faceatlas.apps.drive.events import DriveEvent, Level
from faceatlas.apps.drive.geometry import eye_aspect_ratios, head_pose, mouth_aspect_ratio
from faceatlas.apps.drive.mesh import MEDIAPIPE_MAX_SIDE, FaceMeshTracker, quiet_mediapipe
from faceatlas.apps.drive.monitor import DriverMonitor, FrameReport
from faceatlas.apps.drive.run import run_drive
from faceatlas.apps.drive.source import iter_frames

__all__ = [
    "DriveConfig",
    "DriveEvent",
    "DriverMonitor",
    "FaceMeshTracker",
    "MEDIAPIPE_MAX_SIDE",
    "FrameReport",
    "Level",
    "eye_aspect_ratios",
    "head_pose",
    "iter_frames",
    "mouth_aspect_ratio",
    "quiet_mediapipe",
    "run_drive",
]
