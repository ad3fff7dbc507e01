"""Thresholds and timings of SenseDrive, with where the defaults come from (see docs/drive.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from faceatlas.errors import InvalidArgument


@dataclass(frozen=True)
class DriveConfig:
    """Every tunable of the driver monitor. Times are in seconds, angles in degrees."""

    # Which face is the driver. Faces are looked for in driver_region ((x1, y1, x2, y2) as fractions
    # of the frame). A new driver is the largest (closest) face whose box reaches into the driver's
    # side of the region: driver_side "left" or "right" is the half of the image the driver sits in
    # as the camera sees it, "any" the whole region. Once chosen, the driver's face is followed from
    # frame to frame (the face nearest the last box, moved by less than driver_max_shift of its size)
    # and another face is taken only after the driver was not seen for driver_lost_frames frames:
    # a passenger never stands in for a driver whom Face Mesh missed for a moment.
    driver_region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    driver_side: Literal["left", "right", "any"] = "any"
    driver_lost_frames: int = 10
    driver_max_shift: float = 0.5
    max_faces: int = 4  # faces Face Mesh looks for: enough that passengers do not crowd the driver out
    process_width: int = 640  # frames wider than this are downscaled before Face Mesh
    min_face_confidence: float = 0.5

    # Calibration: the first seconds with a face set the open-eye EAR and the "road ahead" pose.
    calibration_s: float = 5.0
    default_open_ear: float = 0.28  # used until calibrated (Face Mesh EAR of open eyes, measured)
    closed_ear: float = 0.08  # Face Mesh EAR of shut eyes (measured 0.04-0.12 on the test video)

    # Eyes: openness = (EAR - closed_ear) / (open_ear - closed_ear), 1 open, 0 shut.
    blink_below: float = 0.5  # a blink starts below this openness ...
    blink_above: float = 0.6  # ... and ends above this one (hysteresis)
    perclos_closed_below: float = 0.2  # PERCLOS P80: eyes at least 80 % closed
    perclos_window_s: float = 60.0
    perclos_min_s: float = 10.0  # no PERCLOS verdict before this much face time is in the window
    long_blink_s: float = 0.5
    microsleep_s: float = 1.0

    # Yawns: inner-lip opening over mouth width above this for at least yawn_min_s.
    yawn_mar: float = 0.5
    yawn_min_s: float = 1.5

    # Drowsiness levels (counted over the PERCLOS window).
    perclos_warning: float = 0.15
    perclos_alert: float = 0.30
    long_blinks_warning: int = 2
    long_blinks_alert: int = 4
    yawns_warning: int = 2
    yawns_alert: int = 3

    # Attention: eyes/head off the road relative to the calibrated forward pose.
    off_road_yaw: float = 30.0
    off_road_pitch_down: float = 20.0
    off_road_pitch_up: float = 20.0
    gaze_gain: float = 60.0  # degrees of eye rotation per unit of iris offset (half eye width)
    long_glance_s: float = 3.0  # Euro NCAP long distraction: one glance away of ~3 s
    accumulated_s: float = 10.0  # Euro NCAP short distractions: ~10 s away ...
    accumulated_window_s: float = 30.0  # ... within 30 s

    # Presence and camera.
    face_lost_s: float = 1.0  # no face this long -> face_not_visible
    # A report's alert (the banner) is the latest warning or alert whose condition still holds (no
    # face, camera dark, looking away, drowsy ...); a one-off one (a long blink) shows this long.
    alert_hold_s: float = 3.0
    driver_absent_s: float = 5.0  # no face this long -> driver_absent
    dark_luma: float = 20.0  # 95th percentile of luma below this -> too dark
    blocked_std: float = 4.0  # luma spread of a thumbnail below this -> lens covered
    camera_problem_s: float = 1.0
    # Mean absolute change (grey levels) of the face box below which the frame is not reprocessed:
    # repeated frames of a stalled or frame-doubling camera. A blink changes it by about 1-3.
    unchanged_diff: float = 0.25

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = self.driver_region
        if not all(0.0 <= v <= 1.0 for v in self.driver_region) or x1 >= x2 or y1 >= y2:
            raise InvalidArgument(
                f"driver_region {self.driver_region}: give x1,y1,x2,y2 as fractions of the frame with "
                "x1 < x2 and y1 < y2, e.g. 0,0,0.6,1")
        if self.driver_side not in ("left", "right", "any"):
            raise InvalidArgument(f"driver_side {self.driver_side!r}: give left, right or any")
        if not math.isfinite(self.calibration_s) or self.calibration_s < 0:  # nan calibrated at once, inf never
            raise InvalidArgument(f"calibration_s {self.calibration_s}: give 0 or more seconds (a finite number)")
