"""SenseDrive on the real night-cabin clip, against labels read off its frames by eye.

shared/data/videos/driver_night_cabin.mp4 (1280x720, 25 fps). Labels, from viewing the frames:
- 150-285: close-up of the driver at night, eyes open, looking at the camera.
- 361-364: a blink (eyes shut on 362-363; open on 360 and 366).
- 500-504: a blink (eyes shut on 502; open on 499 and 506).
- 960-989: wide shot, driver on the left turns his head towards the image's right (965 ahead,
  980 turned); a passenger sits on the right, so the driver region is the left 60 %.
- 95-140: the road through the windscreen, nobody in view.
- 1310-1320 and 1400-1405: black frames between the closing title cards.
Only the frame ranges needed are decoded.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("mediapipe")

from faceatlas.apps.drive import DriveConfig, DriverMonitor, FrameReport, iter_frames, run_drive
from faceatlas.errors import InvalidInput

VIDEO = "data/videos/driver_night_cabin.mp4"


@pytest.fixture(scope="module")
def video(shared: Path) -> str:
    return str(shared / VIDEO)


@pytest.fixture(scope="module")
def close_up(video: str) -> dict[int, FrameReport]:
    """Frames 150-519 through one monitor (5 s calibration at the start)."""
    monitor = DriverMonitor()
    try:
        return {r.frame: r for r in monitor.run(iter_frames(video, 150, 520))}
    finally:
        monitor.close()


def events_of(reports: dict[int, FrameReport], kind: str) -> list:
    return [e for r in reports.values() for e in r.events if e.type == kind]


def test_eyes_open_and_calibration(close_up: dict[int, FrameReport]) -> None:
    calibrated = events_of(close_up, "calibrated")
    assert len(calibrated) == 1 and calibrated[0].frame == 150 + 125  # 5 s at 25 fps
    assert 0.27 < calibrated[0].details["open_ear"] < 0.35
    open_frames = [close_up[i] for i in range(150, 286)]
    assert all(r.face_found for r in open_frames)
    assert not any(r.eyes_closed for r in open_frames)
    assert min(r.openness[0] + r.openness[1] for r in open_frames if r.calibrated) / 2 > 0.6


@pytest.mark.parametrize(("shut", "ends_at"), [((362, 363), 365), ((502,), 505)])
def test_blinks_are_found(close_up: dict[int, FrameReport], shut: tuple[int, ...], ends_at: int) -> None:
    for frame in shut:
        assert max(close_up[frame].openness) < 0.5, frame
    blinks = {e.frame: e for e in events_of(close_up, "blink")}
    near = [f for f in blinks if abs(f - ends_at) <= 1]
    assert near, f"no blink ending near frame {ends_at}: {sorted(blinks)}"
    assert 0.08 <= blinks[near[0]].details["duration_s"] <= 0.4


def test_no_other_blinks_and_no_alerts(close_up: dict[int, FrameReport]) -> None:
    assert len(events_of(close_up, "blink")) == 2
    assert not any(r.off_road for r in close_up.values() if r.frame < 286)
    assert all(r.drowsiness == 0 for r in close_up.values())


def test_head_turn_is_off_road(video: str) -> None:
    monitor = DriverMonitor(DriveConfig(driver_region=(0.0, 0.0, 0.6, 1.0), calibration_s=0.2))
    try:
        reports = {r.frame: r for r in monitor.run(iter_frames(video, 955, 990))}
    finally:
        monitor.close()
    assert all(r.face_found for r in reports.values())
    assert not any(reports[i].off_road for i in range(955, 965))
    assert all(reports[i].off_road for i in range(970, 990))
    assert all(reports[i].pose.yaw > 25 for i in range(975, 990))


def test_road_view_has_no_driver(video: str) -> None:
    monitor = DriverMonitor()
    try:
        reports = list(monitor.run(iter_frames(video, 95, 141)))
    finally:
        monitor.close()
    assert all(r.camera == "ok" and not r.face_found for r in reports)
    kinds = [e.type for r in reports for e in r.events]
    assert kinds == ["face_not_visible"]  # after 1 s; driver_absent needs 5 s


def test_black_frames_are_too_dark(video: str) -> None:
    monitor = DriverMonitor()
    try:
        reports = list(monitor.run(iter_frames(video, 1310, 1321))) + list(monitor.run(iter_frames(video, 1400, 1406)))
    finally:
        monitor.close()
    assert all(r.camera == "dark" and not r.face_found for r in reports)


def test_grayscale_night_frame(video: str) -> None:
    """An IR camera gives one channel: the same face and eye opening come out."""
    _, _, frame = next(iter_frames(video, 200, 201))
    color, grey = DriverMonitor(), DriverMonitor()
    try:
        from_color = color.process(frame, 0.0, 200)
        from_grey = grey.process(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 0.0, 200)
    finally:
        color.close()
        grey.close()
    assert from_grey.face_found and from_color.face_found
    assert np.allclose(from_grey.ear, from_color.ear, atol=0.03)


def test_identical_frames_are_not_reprocessed(video: str) -> None:
    _, _, frame = next(iter_frames(video, 200, 201))
    monitor = DriverMonitor()
    try:
        first, again = monitor.process(frame, 0.0, 0), monitor.process(frame.copy(), 0.04, 1)
    finally:
        monitor.close()
    assert not first.reused and again.reused and again.ear == first.ear


def test_a_frame_without_a_face_keeps_the_perclos_level(video: str) -> None:
    """Frames 518-526 have no face: the level PERCLOS set (blinks at 362 and 502) holds through
    them, and events report the window's PERCLOS. It went back to 0 with "perclos": 0.0 on every
    frame without a face (or without a head pose) and up again at the next face."""
    config = DriveConfig(perclos_warning=0.01, calibration_s=1.0, perclos_min_s=2.0)
    monitor = DriverMonitor(config)
    try:
        reports = {r.frame: r for r in monitor.run(iter_frames(video, 330, 540))}
    finally:
        monitor.close()
    assert not any(reports[i].face_found for i in range(518, 527))  # as labelled: the driver leaves the view
    levels = [(e.frame, e.details["drowsiness"], e.details["perclos"]) for e in events_of(reports, "drowsiness")]
    assert len(levels) == 1 and levels[0][1] == 1 and levels[0][2] >= 0.01, levels
    assert all(reports[i].drowsiness == 1 for i in range(levels[0][0], 540))


def test_run_drive_writes_what_the_monitor_reports(video: str, tmp_path: Path) -> None:
    """The use case behind `faceatlas drive`: the same events as the monitor on iter_frames, to the
    callback and (one JSON line each, file started afresh) to --events; one annotated frame each."""
    monitor = DriverMonitor(DriveConfig(calibration_s=1.0))
    try:
        expected = [e.to_json() for r in monitor.run(iter_frames(video, 0, 60)) for e in r.events]
    finally:
        monitor.close()
    assert expected, "the first 60 frames calibrate (1 s) and show the road, so events are expected"
    events_path, annotated = tmp_path / "events.jsonl", tmp_path / "annotated.mp4"
    events_path.write_text("left over from an earlier run\n")
    seen: list = []
    summary = run_drive(video, DriveConfig(calibration_s=1.0), output=annotated, events=events_path,
                        max_frames=60, on_event=seen.append)
    assert [e.to_json() for e in seen] == expected == events_path.read_text().splitlines()
    assert summary["frames"] == 60
    capture = cv2.VideoCapture(str(annotated))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 60 and capture.get(cv2.CAP_PROP_FPS) == 25


def test_a_missing_source_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    with pytest.raises(InvalidInput, match="missing.mp4"):
        run_drive(str(tmp_path / "missing.mp4"), DriveConfig(), events=tmp_path / "events.jsonl")
    result = CliRunner().invoke(app, ["drive", str(tmp_path / "missing.mp4"), "--events", str(tmp_path / "e.jsonl")])
    assert result.exit_code == 2 and "missing.mp4" in result.output
    assert not (tmp_path / "events.jsonl").exists() and not (tmp_path / "e.jsonl").exists()


@pytest.mark.slow
def test_whole_clip_through_the_cli(video: str, tmp_path: Path) -> None:
    """All 1,501 frames: the road and title-card stretches (1110-1305, 1310-1500) raise presence events."""
    import json

    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    events_path, annotated = tmp_path / "events.jsonl", tmp_path / "annotated.mp4"
    result = CliRunner().invoke(app, ["drive", video, "--json", "--events", str(events_path), "-o", str(annotated)])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    kinds = {e["type"] for e in events}
    assert {"calibrated", "blink", "face_not_visible", "driver_absent", "camera_dark"} <= kinds
    assert any(e["type"] == "driver_absent" and 1110 <= e["frame"] <= 1310 for e in events)
    assert cv2.VideoCapture(str(annotated)).get(cv2.CAP_PROP_FRAME_COUNT) == 1501


# Frames where the driver (the bearded man at the wheel, on the image's left) and a passenger are
# both in view, labelled by eye: a point on the driver's face and one on a passenger's face, in
# full-frame pixels. 480-490: close-up, a back-seat passenger over his shoulder (right); 560-630: wide
# shot, passengers leaning in from the right, the one at 600-630 looking down (eyes nearly shut);
# 1000-1090: wide shot, back-seat passengers on the right.
DRIVER_AND_PASSENGER = {
    480: ((600, 320), (1050, 190)),
    490: ((620, 320), (1050, 190)),
    560: ((455, 180), (1120, 120)),
    570: ((450, 180), (1080, 190)),
    600: ((450, 175), (915, 255)),
    630: ((445, 175), (865, 300)),
    1000: ((295, 225), (885, 160)),
    1040: ((335, 230), (710, 130)),
    1080: ((390, 245), (785, 130)),
    1090: ((400, 245), (795, 125)),
}


def covers(box: tuple[float, float, float, float], point: tuple[int, int]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


@pytest.mark.parametrize("config", [DriveConfig(), pytest.param(DriveConfig(driver_side="left"),
                                                                 marks=pytest.mark.slow)], ids=["default", "left_seat"])
def test_the_driver_is_watched_not_a_passenger(video: str, config: DriveConfig) -> None:
    """With the whole frame as the region, the monitor keeps to the driver while passengers come
    into view; the passenger looking down at 600-630 once raised a critical microsleep."""
    reports: dict[int, FrameReport] = {}
    for start, end in ((460, 640), (990, 1100)):
        monitor = DriverMonitor(config)
        try:
            reports.update({r.frame: r for r in monitor.run(iter_frames(video, start, end))})
        finally:
            monitor.close()
    for frame, (driver, passenger) in DRIVER_AND_PASSENGER.items():
        face = reports[frame].face
        assert face is not None, frame
        assert covers(face.bbox, driver) and not covers(face.bbox, passenger), (frame, face.bbox)
    assert max(r.drowsiness for r in reports.values()) < 3


def test_driver_side_picks_among_the_faces_of_one_frame(video: str) -> None:
    """The faces Face Mesh finds in frame 600 (driver left, passenger right): a fresh chooser takes
    the face on the configured side, and "any" the largest."""
    from faceatlas.apps.drive.mesh import DriverChooser, FaceMeshTracker

    _, _, frame = next(iter_frames(video, 600, 601))
    tracker = FaceMeshTracker(DriveConfig())
    try:
        faces = tracker.find(frame)
    finally:
        tracker.close()
    driver, passenger = DRIVER_AND_PASSENGER[600]
    assert len(faces) >= 2
    height, width = frame.shape[:2]
    left = DriverChooser(DriveConfig(driver_side="left")).choose(faces, width, height)
    right = DriverChooser(DriveConfig(driver_side="right")).choose(faces, width, height)
    anyone = DriverChooser(DriveConfig()).choose(faces, width, height)
    assert left is not None and covers(left.bbox, driver)
    assert right is not None and covers(right.bbox, passenger)
    assert anyone is faces[0] and anyone.area == max(f.area for f in faces)


def test_face_not_visible_clears_as_soon_as_the_driver_is_tracked(video: str, tmp_path: Path) -> None:
    """Frames 0-199: the driver (0-89), the road with nobody (95-140), the driver's close-up (150-).
    face_not_visible is the alert only while no face is tracked; in the annotated video (what
    `faceatlas drive -o` writes) its banner once stayed over the driver's tracked face."""
    monitor = DriverMonitor()
    try:
        reports = list(monitor.run(iter_frames(video, 0, 200)))
    finally:
        monitor.close()
    lost = [r.frame for r in reports if r.alert is not None and r.alert.type == "face_not_visible"]
    assert lost and all(not reports[i].face_found for i in lost)
    back = [r for r in reports if r.frame > lost[-1]]
    assert back and back[0].face_found and all(r.face_found for r in back)
    assert all(r.alert is None or r.alert.type != "face_not_visible" for r in reports if r.face_found)

    annotated = tmp_path / "annotated.mp4"
    run_drive(video, DriveConfig(), output=annotated, max_frames=200)
    capture, raw = cv2.VideoCapture(str(annotated)), iter_frames(video, 0, 200)

    def banner(index: int) -> bool:
        """Pixels of the banner row (right of the gauges panel) changed by drawn text."""
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, drawn = capture.read()
        assert ok
        diff = cv2.absdiff(drawn[10:50, 220:900], frames[index][10:50, 220:900])
        return int((diff.max(axis=2) > 80).sum()) > 50

    frames = {i: f for i, _, f in raw}
    assert banner(lost[len(lost) // 2])
    assert not any(banner(r.frame) for r in back[::5])


def test_cli_takes_the_drivers_seat(video: str) -> None:
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    result = CliRunner().invoke(app, ["drive", video, "--seat", "left", "--max-frames", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert '"frames": 3' in result.output
    wrong = CliRunner().invoke(app, ["drive", video, "--seat", "middle", "--max-frames", "3"])
    assert wrong.exit_code == 2 and "left, right" in wrong.output
    shown = CliRunner().invoke(app, ["drive", video, "--max-frames", "3"])  # a long clip showed nothing while working
    assert shown.exit_code == 0 and "drive" in shown.stderr and "3/3" in shown.stderr, shown.stderr
    quiet = CliRunner().invoke(app, ["drive", video, "--max-frames", "3", "-q"])
    assert quiet.exit_code == 0 and "3/3" not in quiet.stderr


@pytest.mark.parametrize("region", ["0.6,0,0.2,1", "0,0.5,1,0.5", "a,b,c,d", "0,0,2,1", "0,0,1"])
def test_a_bad_driver_region_is_refused_before_any_frame(video: str, region: str) -> None:
    """An empty or inverted region used to reach OpenCV (`!_src.empty()` in cvtColor), and a
    region that is not numbers a ValueError traceback; both are a usage error now (exit 2)."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app
    from faceatlas.errors import InvalidArgument

    result = CliRunner().invoke(app, ["drive", video, "--region", region, "--max-frames", "3"])
    assert result.exit_code == 2, result.output
    assert "x1,y1,x2,y2" in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    with pytest.raises(InvalidArgument, match="driver_region"):
        DriveConfig(driver_region=(0.6, 0.0, 0.2, 1.0))
    with pytest.raises(InvalidArgument, match="calibration_s"):
        DriveConfig(calibration_s=-1.0)


def test_the_summary_gives_no_perclos_before_its_minimum_time(video: str) -> None:
    """Frames 355-372 (0.72 s, the blink at 362-363 in them): each frame's report had no PERCLOS
    (none before 10 s of face time), yet the summary said 0.176. With a minimum of 0.5 s both give it."""
    frames = list(iter_frames(video, 355, 373))
    for minimum, said in ((10.0, False), (0.5, True)):
        monitor = DriverMonitor(DriveConfig(perclos_min_s=minimum))
        try:
            reports = list(monitor.run(iter(frames)))
        finally:
            monitor.close()
        summary = monitor.summary()
        assert summary["frames"] == 18 and summary["face_frames"] == 18, summary
        assert (reports[-1].perclos is not None) is said
        assert (summary["perclos"] is not None) is said, summary
        if said:
            assert summary["perclos"] == round(reports[-1].perclos, 3) > 0.05  # the blink's frames
