"""Line crossings on the overhead pedestrian clip, checked against counts labelled by hand.

Hand labels (frames 0, 20, 40, ..., 120 viewed with the line y=360 drawn on them), people whose
body centre moves across y=360 between frame 0 and frame 120:

- moving up (towards y=0), 5: backpack man at x~520 (frames 0-20), woman with bag at x~780
  (0-20), man with shopping bag at x~470 (40-60), man at x~1160 (60-80), woman at x~730 (100-120);
- moving down, 4: man at x~990 (20-40), person carrying a box at x~1000 (0-20), man at x~190
  (0-20), man at x~390 (80-100).

A group of four standing on the line at x~250 does not move. Tolerance: +-2 per direction
(people already on the line at frame 0, and jitter of the standing group).
"""

from __future__ import annotations

from faceatlas.video.config import CameraConfig
from faceatlas.video.pipeline import VideoPipeline
from faceatlas.video.sinks import EventBus
from faceatlas.video.sources import VideoSource
from faceatlas.video.zones import LineSpec, ZoneSpec

HAND_UP, HAND_DOWN, TOLERANCE = 5, 4, 2
LAST_FRAME = 130  # crossings up to frame 120 register a few frames later


def test_line_crossings_match_hand_counts(pedestrians, person_detector, memory):
    zone = ZoneSpec("left half", [(0, 0), (640, 0), (640, 720), (0, 720)], levels={"busy": 5, "crowded": 12})
    camera = CameraConfig(source=str(pedestrians), name="hall", stride=2, faces=False,
                          lines=[LineSpec.parse("0,360,1280,360")], zones=[zone])
    pipeline = VideoPipeline(camera, None, EventBus([memory]), persons=person_detector)
    source = VideoSource(pedestrians)
    for frame in source:
        pipeline.process(frame, source.fps)
        if frame.index >= LAST_FRAME:
            break
    pipeline.finish()
    crossings = memory.of("line_crossed")
    up = sum(e.data["direction"] == "in" for e in crossings)  # "in" is upwards for a left-to-right line
    down = sum(e.data["direction"] == "out" for e in crossings)
    assert abs(up - HAND_UP) <= TOLERANCE and abs(down - HAND_DOWN) <= TOLERANCE, (up, down)
    assert pipeline.stats.line_counts == {"line": {"in": up, "out": down}}
    occupancy = memory.of("zone_occupancy")
    assert occupancy and all(e.data["zone"] == "left half" for e in occupancy)
    assert {e.data["level"] for e in occupancy} & {"busy", "crowded"}
    assert len(memory.of("track_started")) >= 15
