"""Dwell and queue entries in a zone survive missed detections: ByteTrack lists only the tracks matched
in a frame, so a parked car that the detector misses every 3rd frame is absent from every 3rd tracker
output, yet still parked (out of that frame's count and queue only). Its entry lasts until it is seen
outside the zone or the track ends (the camera's ``track_timeout``, or the pipeline's end of the track)."""

from __future__ import annotations

import numpy as np
import supervision as sv

from faceatlas.video.config import CameraConfig
from faceatlas.video.traffic import CameraAnalytics, labelled
from faceatlas.video.zones import ZoneCounter, ZoneSpec

BAY = [(0, 0), (100, 0), (100, 100), (0, 100)]
INSIDE, OUTSIDE = (10, 10, 50, 50), (200, 200, 240, 240)


def _tracked(*rows: tuple[int, tuple[float, float, float, float]]) -> sv.Detections:
    """Tracked cars: ``(track id, box)`` per row (none: this frame's tracker output is empty)."""
    if not rows:
        empty = sv.Detections.empty()
        empty.tracker_id = np.zeros(0, int)
        return labelled(empty, "vehicle", [])
    found = sv.Detections(xyxy=np.array([box for _, box in rows], float), tracker_id=np.array([t for t, _ in rows]),
                          class_id=np.full(len(rows), 2), confidence=np.full(len(rows), 0.9))
    return labelled(found, "vehicle", ["car"] * len(rows))


def _setup(**zone: float) -> tuple[CameraAnalytics, ZoneCounter]:
    spec = ZoneSpec("bay", BAY, classes=("car",), **zone)  # type: ignore[arg-type]
    camera = CameraConfig(source="x.mp4", classes=["car"], zones=[spec], track_timeout=1.5)
    return CameraAnalytics(camera, []), ZoneCounter(spec)


def test_a_car_missed_every_third_frame_still_parks_too_long():
    """10 s in the bay at 2 analyzed frames/s, max_dwell 2 s, missed on every 3rd frame: one event."""
    analytics, bay = _setup(max_dwell=2.0)
    events = []
    for i in range(20):
        present = i % 3 != 2
        events += [e for e in analytics.zone(bay, _tracked((1, INSIDE)) if present else _tracked(), i * 0.5)
                   if e[0] == "dwell_exceeded"]
    assert len(events) == 1, events
    _, key, data = events[0]
    assert key == ("vehicle", 1) and data["rule"] == "parked_too_long"
    assert 2.0 < data["dwell"] <= 3.0  # counted from the first frame in the bay, not from the last miss


def test_the_queue_keeps_a_missed_track_s_entry_and_drops_one_that_left_or_ended():
    """A track missed in a frame is not in that frame's queue (nor its count: the queue was 1 at a count
    of 0), but its entry is kept: seen again, it is queued at once, its wait not started afresh."""
    analytics, bay = _setup(queue_after=1.0)
    reported = [(0, 0)]

    def queue(time: float, *rows: tuple[int, tuple[float, float, float, float]]) -> int:
        """The queue after this frame (the last one reported: a change of the queue is always reported)."""
        reported.extend((e[2]["queue"], e[2]["count"]) for e in analytics.zone(bay, _tracked(*rows), time)
                        if e[0] == "zone_occupancy")
        return reported[-1][0]

    for i in range(4):  # two cars wait 1.5 s
        assert queue(i * 0.5, (1, INSIDE), (2, INSIDE)) == (2 if i >= 2 else 0)
    assert queue(2.0, (2, INSIDE)) == 1, "car 1 missed for one frame is not queued in it"
    assert queue(2.5, (1, INSIDE), (2, OUTSIDE)) == 1, "car 1 back, queued at once; car 2 seen outside has left"
    assert queue(3.0, (2, INSIDE)) == 0, "car 1 missed again; car 2 back: its dwell starts afresh"
    assert queue(3.5, (2, INSIDE)) == 0
    assert queue(4.0, (1, INSIDE), (2, INSIDE)) == 2, "car 1 unseen for 1.5 s (the track timeout): still queued"
    assert queue(5.5, (2, INSIDE)) == 1
    assert queue(6.0, (1, INSIDE), (2, INSIDE)) == 1, "car 1 unseen for longer (2 s) is a new arrival"
    analytics.forget(("vehicle", 2))  # the pipeline ended the track
    assert queue(7.0) == 0
    assert all(waiting <= count for waiting, count in reported), reported


def test_a_track_back_after_the_timeout_dwells_afresh():
    analytics, bay = _setup(max_dwell=2.0)
    found = []
    for time in (0.0, 0.5, 1.0, 1.5, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0):  # lost 2 s (> 1.5 s) between 1.5 and 3.5
        found += [e[2]["dwell"] for e in analytics.zone(bay, _tracked((1, INSIDE)), time) if e[0] == "dwell_exceeded"]
    assert found == [2.5]  # from 3.5 s: 6.0 - 3.5
