"""The city settings of cams.yaml: classes, aliases, lanes with a direction, class zones with dwell,
queue and density levels, the ground-plane calibration; and the mistakes refused before a run."""

from __future__ import annotations

import numpy as np
import pytest

from faceatlas.errors import InvalidArgument, InvalidInput
from faceatlas.video.analytics import GroundPlane, SpeedMeter, ViewTransformer
from faceatlas.video.config import CameraConfig, load_config
from faceatlas.video.pipeline import VideoPipeline
from faceatlas.video.sinks import EventBus

CAMS = """
detector: yolox-nano
cameras:
  - name: junction
    source: street.mp4
    classes: [person, car, bus]
    aliases: {cell_phone: car}
    lines: [{name: northbound, start: [0, 300], end: [640, 300], expected: in}]
    zones:
      - {name: bay, polygon: [[0, 0], [300, 0], [300, 200], [0, 200]], classes: [car], max_dwell: 600}
      - {name: platform, polygon: [[0, 300], [640, 300], [640, 480], [0, 480]], per_m2: true,
         levels: {busy: 1.0, crowded: 2.0}, hysteresis: 0.3, queue_after: 5}
    calibration: {image: [[0, 300], [640, 300], [640, 480], [0, 480]], world: [[0, 0], [10, 0], [10, 6], [0, 6]]}
    speed_limit_kmh: 30
    start_time: 2026-12-04T10:00:00
"""


def test_city_settings_are_read_from_cams_yaml(tmp_path):
    path = tmp_path / "cams.yaml"
    path.write_text(CAMS)
    config = load_config(path)
    camera = config.cameras[0]
    assert config.detector == "yolox-nano" and camera.classes == ["person", "car", "bus"]
    assert camera.aliases == {"cell_phone": "car"} and camera.lines[0].expected == "in"
    bay, platform = camera.zones
    assert bay.classes == ("car",) and bay.max_dwell == 600 and platform.per_m2 and platform.queue_after == 5
    assert camera.calibration is not None and camera.speed_limit_kmh == 30
    assert camera.blur_plates and camera.blur_unlisted  # privacy on unless turned off
    assert camera.start_time is not None and camera.start_time.hour == 10
    pipeline = VideoPipeline(camera, None, EventBus())
    assert pipeline.zones[1].area_m2 == pytest.approx(60.0)  # the platform: 10 m x 6 m on the ground


def test_ground_plane_maps_pixels_to_metres_and_speeds_carry_their_error():
    plane = GroundPlane([(0, 0), (100, 0), (100, 50), (0, 50)], [(0, 0), (10, 0), (10, 5), (0, 5)])
    view = ViewTransformer(plane)
    assert view.transform(np.array([[50, 25]]))[0].tolist() == pytest.approx([5.0, 2.5], abs=1e-4)
    meter = SpeedMeter(window=1.0)
    for step in range(6):  # 10 px (1 m) every 0.2 s = 5 m/s = 18 km/h, with a jitter of +-1 px
        meter.add(("vehicle", 1), step * 0.2, view.transform(np.array([[step * 10 + (-1) ** step, 25]]))[0])
    speed, error = meter.speed(("vehicle", 1))
    assert speed == pytest.approx(18.0, abs=2.0) and 0 < error < 2.0


@pytest.mark.parametrize("change", [{"classes": ["person", "dog"]}, {"aliases": {"cell_phone": "truck"}},
                                    {"aliases": {"phone": "car"}}])
def test_unknown_classes_and_aliases_are_refused(change):
    with pytest.raises(InvalidArgument):  # when the camera is made (as a file is read), not after the models load
        VideoPipeline(CameraConfig(**{"source": "x.mp4", "classes": ["person", "car"], **change}), None, EventBus())


def test_a_density_zone_needs_a_calibration_and_a_calibration_four_points(tmp_path):
    path = tmp_path / "cams.yaml"
    path.write_text("cameras:\n  - {source: a.mp4, zones: [{name: z, polygon: [[0,0],[9,0],[9,9]], per_m2: true}]}\n")
    with pytest.raises(InvalidArgument, match="cams.yaml: camera camera1: zone z: per_m2 .* need the camera's calib"):
        load_config(path)  # when the file is read, not after the models loaded
    with pytest.raises(InvalidArgument):
        GroundPlane([(0, 0), (1, 0), (1, 1)], [(0, 0), (1, 0), (1, 1)])
    path.write_text("cameras:\n  - {source: a.mp4, lines: [{start: [0, 0], end: [9, 9], expected: up}]}\n")
    with pytest.raises(InvalidInput):
        load_config(path)


def test_the_larger_detector_is_pinned_by_url_and_sha256(tmp_path):
    from faceatlas.engine.persons import OBJECT_MODELS, ObjectDetector
    from faceatlas.errors import ModelMissing, UnknownPack
    from faceatlas.settings import EngineSettings

    spec, size = OBJECT_MODELS["yolox-s"]
    assert size == 640 and spec.url and spec.url.startswith("https://") and len(spec.sha256 or "") == 64
    offline = EngineSettings(model_dir=str(tmp_path), cache=tmp_path / "cache", offline=True)
    with pytest.raises(ModelMissing):  # not in ../shared: fetched on first use where the network is allowed
        ObjectDetector(name="yolox-s", settings=offline)
    with pytest.raises(UnknownPack):
        ObjectDetector(name="yolov99")


@pytest.mark.parametrize("lines", ['["5,5,5,5"]', "[{start: [0, 300], end: [0, 300]}]"])
def test_a_line_of_zero_length_is_refused_before_a_run(tmp_path, shared, lines):
    """A line whose two points are one reached supervision's LineZone, whose bare ValueError
    ("The magnitude of the vector cannot be zero") came out of `faceatlas watch` and `retail run`
    as a traceback (exit 1); it is a validation_error (exit 2) before any frame is read."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app
    from faceatlas.video.zones import LineSpec

    with pytest.raises(InvalidArgument, match="same point"):
        LineSpec.parse("5,5,5,5")
    path = tmp_path / "cams.yaml"
    video = shared / "data" / "videos" / "car-detection.mp4"
    path.write_text(f"events: {tmp_path / 'events.jsonl'}\ncameras:\n  - {{source: {video}, faces: false, "
                    f"persons: false, lines: {lines}}}\n")
    result = CliRunner().invoke(app, ["watch", "--config", str(path)])
    assert result.exit_code == 2 and "same point" in result.output, result.output
    assert not (tmp_path / "events.jsonl").exists()


@pytest.mark.parametrize(("body", "says"), [
    ("sinks: {webhook: x}", "cams.yaml: unknown settings ['sinks'] (known: collection, database"),
    ("webhook: http://example.com/hook", "cams.yaml: webhook: a mapping of settings, not str"),
    ("webhook: {url: 'htp://example.com', secret: s}", "webhook: 'url' is an http:// or https:// address"),
    ("webhook: {url: 'http://example.com'}", "cams.yaml: webhook: missing settings ['secret']"),
    ("mqtt: {hots: broker}", "cams.yaml: mqtt: unknown settings ['hots'] (known: backoff_max"),
    ("cameras: [{name: door}]", "cams.yaml: camera door: missing settings ['source']"),
])
def test_a_cams_yaml_setting_out_of_place_is_named(tmp_path, body, says):
    """A misplaced top-level key was `WatchConfig.__init__() got an unexpected keyword argument`, a
    webhook given as a string `argument after ** must be a mapping`, a camera without a source `'source'`."""
    path = tmp_path / "cams.yaml"
    cameras = "" if body.startswith("cameras") else "cameras: [{source: a.mp4}]\n"
    path.write_text(cameras + body + "\n")
    with pytest.raises(InvalidInput) as refused:
        load_config(path)
    assert says in str(refused.value)


@pytest.mark.parametrize(("body", "says"), [
    # each was kept and failed mid-run (a traceback, a webhook thread dead on its first event), or never
    ("webhook: {url: 'http://127.0.0.1:9/h', secret: 12345}", "webhook: secret: Input should be a valid string"),
    ("webhook: {url: 'http://127.0.0.1:9/h', secret: s, max_attempts: 0}", "max_attempts: Input should be greater"),
    ("mqtt: {port: 99999}", "mqtt: port: Input should be less than or equal to 65535"),
    ("mqtt: {port: abc}", "mqtt: port: Input should be a valid integer"),
    ("cameras: [{source: a.mp4, recognition: {samples: 0}}]", "recognition: samples: Input should be greater"),
    ("cameras: [{source: a.mp4, watchlist: alice}]", "watchlist is a list of subject ids, not 'alice'"),
    ("cameras: [{source: a.mp4, classes: []}]", "classes names at least one class"),
    ("cameras: [{source: a.mp4, classes: [cars]}]", "camera camera1: class 'cars' is not person or one of car"),
    # a zone of a class its camera does not track stayed 0, and its stored 'cars' row was refused later
    ("cameras: [{source: a.mp4, classes: [person, car], zones: [{name: bay, polygon: [[0, 0], [9, 0], [9, 9]], "
     "classes: [cars]}]}]", "zone bay: classes cars not among the camera's classes (person, car)"),
    ("cameras: [{source: a.mp4, zones: [{name: bay, polygon: [[0, 0], [9, 0], [9, 9]], classes: [car]}]}]",
     "camera camera1: zone bay: classes car not among the camera's classes (person)"),
    ("cameras: [{source: a.mp4, zones: [{name: bay, polygon: [[0, 0], [9, 0], [9, 9]], classes: [face]}]}]",
     "zone bay: classes face not among the camera's classes (person)"),
    ("cameras: [{source: a.mp4, track_timeout: -1}]", "track_timeout is a number above 0"),
    ("cameras: [{source: a.mp4, scene_cut: high}]", "scene_cut is a number of 0 or more"),
    ("cameras: [{source: a.mp4, plate_share: 5}]", "plate_share is the share of a vehicle box"),
    ("cameras: [{source: a.mp4, start_time: 5}]", "start_time is an ISO 8601 date and time"),
    ("cameras: [{source: a.mp4, name: door+1}]", "a camera name is 1 to 200 characters without '/'"),
    ("cameras: [{source: a.mp4, name: ../outside}]", "a camera name is 1 to 200 characters without '/'"),
    ("cameras: [{source: a.mp4, name: '..'}]", "not '.' or '..'"),
    ("cameras: [{source: a.mp4, lines: [{start: [1, 1, 1], end: [5, 5]}]}]", "cams.yaml"),
    ("cameras: [{source: a.mp4, zones: [zone1]}]", "cams.yaml"),
    # each was taken without a word (a misspelt key ignored, blurring off, 'car' the classes c, a, r) or
    # refused in Python's words (a traceback for 'database: 5')
    ("cameras: [{source: a.mp4, lines: [{start: [0, 9], end: [9, 9], expectd: in}]}]",
     "camera 1: line 1: unknown settings ['expectd']"),
    ("cameras: [{source: a.mp4, lines: [[0, 0, 10, 10]]}]", "line 1: 'x1,y1,x2,y2' or a mapping"),
    ("cameras: [{source: a.mp4, calibration: {image: [[0, 0]], world: [[0, 0]], speed_windw: 3}}]",
     "calibration: unknown settings ['speed_windw']"),
    ("cameras: [{source: a.mp4, zones: [{polygon: [[0, 0], [9, 0], [9, 9]]}]}]", "zone 1: missing settings ['name']"),
    ("cameras: [{source: a.mp4, blur_unlisted: }]", "blur_unlisted is true or false, not None"),
    ("cameras: [{source: a.mp4, blur_unlisted: 0}]", "blur_unlisted is true or false, not 0"),
    ("cameras: [{source: a.mp4, faces: 'false'}]", "faces is true or false, not 'false'"),
    ("cameras: [{source: a.mp4, classes: car}]", "classes is a list ([...]), not 'car'"),
    ("cameras: [{source: a.mp4, snapshots: 5}]", "camera 1: snapshots is a path, not '5'"),
    ("cameras: [{source: a.mp4, start_time: yesterday}]", "start_time is an ISO 8601 date and time"),
    ("events: 5", "cams.yaml: events is a path, not '5'"),
    ("database: 5", "cams.yaml: database is text, not '5'"),
    ("webhook: {}", "cams.yaml: webhook: missing settings ['url', 'secret']"),
    # a bow-tie: the symmetric one was "on one line", the other taken as two triangles
    ("cameras: [{source: a.mp4, zones: [{name: z, polygon: [[0, 0], [100, 100], [100, 0], [0, 100]]}]}]",
     "zone z: its edges cross"),
    ("cameras: [{source: a.mp4, zones: [{name: z, polygon: [[0, 0], [100, 100], [100, 0], [0, 50]]}]}]",
     "zone z: its edges cross"),
])
def test_a_cams_yaml_value_of_the_wrong_kind_is_refused_at_load(tmp_path, body, says):
    path = tmp_path / "cams.yaml"
    cameras = "" if body.startswith("cameras") else "cameras: [{source: a.mp4}]\n"
    path.write_text(cameras + body + "\n")
    with pytest.raises(InvalidInput) as refused:
        load_config(path)
    assert says in str(refused.value) and "\n" not in str(refused.value), str(refused.value)


def test_an_unquoted_yaml_date_is_a_start_time_and_the_output_is_never_the_source(tmp_path, shared):
    """`start_time: 2026-12-04` (YAML reads a date) was an AttributeError traceback; `--output` naming
    the source file overwrote the video being read (60 kB left at 16 kB, exit 0)."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    path = tmp_path / "cams.yaml"
    path.write_text("cameras: [{source: a.mp4, start_time: 2026-12-04}]\n")
    assert str(load_config(path).cameras[0].start_time) == "2026-12-04 00:00:00+00:00"
    video = tmp_path / "clip.mp4"
    video.write_bytes((shared / "data" / "videos" / "car-detection.mp4").read_bytes())
    size = video.stat().st_size
    for output in (str(video), str(tmp_path / "." / "clip.mp4")):
        result = CliRunner().invoke(app, ["watch", str(video), "--output", output, "--no-persons"])
        assert result.exit_code == 2 and "would destroy the video being read" in result.output, result.output
    assert video.stat().st_size == size


def test_two_cameras_of_one_name_and_options_beside_a_config_are_refused(tmp_path, shared):
    """Two cameras named alike merged their counts (seen 46 = 2 x 23); SOURCE, --stride, --line and
    --output beside --config were dropped without a word; a file named 'clip #2.mp4' names a camera."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app
    from faceatlas.video import camera_name

    path = tmp_path / "cams.yaml"
    path.write_text("cameras: [{source: a.mp4, name: door}, {source: b.mp4, name: door}]\n")
    with pytest.raises(InvalidInput, match="twice: door"):
        load_config(path)
    path.write_text("cameras: [{source: a.mp4}]\ntenant: [a, b]\n")
    with pytest.raises(InvalidInput, match="tenant is 1 to 64 characters"):
        load_config(path)
    path.write_text(f"cameras: [{{source: a.mp4}}]\ntenant: svc:{'t' * 64}\n")  # a service tenant: its id counts
    assert load_config(path).tenant == f"svc:{'t' * 64}"
    for tenant in ("t" * 65, f"svc:{'t' * 65}"):
        path.write_text(f"cameras: [{{source: a.mp4}}]\ntenant: {tenant}\n")
        with pytest.raises(InvalidInput, match="tenant is 1 to 64 characters"):
            load_config(path)
    # 'svc:' alone was taken: its events were stored under tenant 'svc:', which no service tenant lists
    path.write_text("cameras: [{source: a.mp4}]\ntenant: 'svc:'\n")
    with pytest.raises(InvalidInput, match="tenant 'svc:' names no service tenant: .*svc:<id>"):
        load_config(path)
    path.write_text("cameras: [{source: a.mp4}]\n")
    for beside in (["x.mp4"], ["--stride", "3"], ["--line", "1,1,5,5"], ["--output", str(tmp_path / "o.mp4")]):
        result = CliRunner().invoke(app, ["watch", "--config", str(path), *beside])
        assert result.exit_code == 2 and "not beside it" in result.output, result.output
    assert camera_name("/videos/clip #2.mp4") == "clip _2" and camera_name("rtsp://10.0.0.5/door+1") == "door_1"


GROUND = "[[0, 0], [10, 0], [10, 20], [0, 20]]"
IMAGE = "[[0, 300], [1280, 300], [1280, 720], [0, 720]]"


@pytest.mark.parametrize(("calibration", "says"), [
    # image points on one line: every speed was 0.0 and speeding never fired
    (f"{{image: [[0, 0], [400, 0], [800, 0], [1200, 0]], world: {GROUND}}}", "image points 1, 2 and 3 are on one line"),
    # three of them in a row: a per_m2 zone's area was 0.0 m², its density 9e13
    (f"{{image: [[0, 0], [400, 400], [800, 800], [0, 700]], world: {GROUND}}}", "image points 1, 2 and 3"),
    (f"{{image: [[0, 0], [400, 401], [800, 800], [0, 700]], world: {GROUND}}}", "image points 1, 2 and 3"),  # nearly
    (f"{{image: {IMAGE}, world: [[0, 0], [10, 0], [20, 0], [0, 20]]}}", "world points 1, 2 and 3"),
    (f"{{image: [[0, 300], [1280, 720], [1280, 300], [0, 720]], world: {GROUND}}}", "not the same 4 corners"),
    # a window of no seconds gave no speeds; "1" was a TypeError mid-run
    (f"{{image: {IMAGE}, world: {GROUND}, speed_window: -1}}", "speed_window is the seconds"),
    (f"{{image: {IMAGE}, world: {GROUND}, speed_window: 0}}", "speed_window is the seconds"),
    (f"{{image: {IMAGE}, world: {GROUND}, speed_window: '1'}}", "speed_window is the seconds"),
])
def test_a_degenerate_calibration_is_refused_when_loaded(tmp_path, calibration, says):
    path = tmp_path / "cams.yaml"
    path.write_text(f"cameras:\n  - {{source: a.mp4, speed_limit_kmh: 3, calibration: {calibration},\n"
                    "     zones: [{name: z, polygon: [[0, 0], [99, 0], [99, 99]], per_m2: true}]}\n")
    with pytest.raises(InvalidInput, match=f"camera 1: calibration: .*{says}"):
        load_config(path)
    # a named camera's is said of its name, as its other mistakes are (it was 'camera 1' beside 'camera door')
    path.write_text(f"cameras:\n  - {{name: door, source: a.mp4, speed_limit_kmh: 3, calibration: {calibration}}}\n")
    with pytest.raises(InvalidInput, match=f"cams.yaml: camera door: calibration: .*{says}"):
        load_config(path)
    path.write_text(f"cameras:\n  - {{source: a.mp4, calibration: {{image: {IMAGE}, world: {GROUND}, "
                    "speed_window: 0.5}}\n")
    assert load_config(path).cameras[0].calibration.speed_window == 0.5


def test_a_zone_drawn_far_past_the_frame_holds_no_mask_of_its_reach():
    """supervision's PolygonZone drew a mask from (0, 0) to the polygon's far corner: a zone to
    (128000, 72000) asked for 8.6 GiB (MemoryError); here one to (6000, 6000), 36 MB then."""
    import tracemalloc

    import supervision as sv

    from faceatlas.video.zones import ZoneCounter, ZoneSpec

    spec = ZoneSpec("far", [(0, 0), (6000, 0), (6000, 6000), (0, 6000)], anchor="center")
    tracemalloc.start()
    try:
        zone = ZoneCounter(spec)
        boxes = np.array([[10, 10, 30, 30], [5990, 5990, 6010, 6010], [6005, 10, 6050, 30], [-40, 10, -20, 30]],
                         np.float32)
        inside = zone.zone.trigger(sv.Detections(xyxy=boxes))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak} bytes for a zone of 4 corners"
    assert inside.tolist() == [True, True, False, False]  # the corner's edge is inside; past it or left of 0 not
    spec = ZoneSpec("huge", [(0, 0), (128000, 0), (128000, 72000), (0, 72000)])
    assert ZoneCounter(spec).zone.trigger(sv.Detections(xyxy=boxes[:1])).tolist() == [True]


@pytest.mark.parametrize(("geometry", "says"), [
    # two zones 'z' stored one zone:z:mean, a blend of both; two lines 'mid' one series of crossings
    ("zones: [{name: z, polygon: [[0, 0], [9, 0], [9, 9]]}, {name: z, polygon: [[20, 0], [29, 0], [29, 9]]}]",
     "zone names are unique within a camera .*twice: z"),
    ("lines: [{name: mid, start: [0, 5], end: [9, 5]}, {name: mid, start: [0, 7], end: [9, 7]}]",
     "line names are unique within a camera .*twice: mid"),
    ("lines: [{start: [0, 5], end: [9, 5]}, {name: line1, start: [0, 7], end: [9, 7]}]", "twice: line1"),
    # a name that is no text: an unhashable list before the run (a line), or mid-run (a zone)
    ("lines: [{name: [1], start: [0, 5], end: [9, 5]}]", "line 1: a line's name is text"),
    ("zones: [{name: [z], polygon: [[0, 0], [9, 0], [9, 9]]}]", "zone 1: a zone's name is text"),
    ("zones: [{name: '', polygon: [[0, 0], [9, 0], [9, 9]]}]", "zone 1: a zone's name is text"),
    ("zones: [{name: 7, polygon: [[0, 0], [9, 0], [9, 9]]}]", "zone 1: a zone's name is text"),
])
def test_line_and_zone_names_are_unique_text_within_a_camera(tmp_path, geometry, says):
    path = tmp_path / "cams.yaml"
    path.write_text(f"cameras:\n  - {{source: a.mp4, {geometry}}}\n")
    with pytest.raises(InvalidInput, match=f"cams.yaml: camera.*{says}"):
        load_config(path)
    path.write_text("cameras:\n  - {source: a.mp4, lines: [{name: z, start: [0, 5], end: [9, 5]}],\n"
                    "     zones: [{name: z, polygon: [[0, 0], [9, 0], [9, 9]]}]}\n")
    assert [spec.name for spec in load_config(path).cameras[0].lines] == ["z"]  # a line and a zone may share one


def test_a_zone_counts_the_classes_its_camera_tracks(tmp_path):
    """The refusal of a zone's class that its camera does not track leaves the zones that count one of
    the camera's classes, and faces on a camera without the person detector."""
    path = tmp_path / "cams.yaml"
    path.write_text("cameras:\n"
                    "  - {source: a.mp4, classes: [person, car], zones: [{name: bay, polygon: [[0, 0], [9, 0], [9, 9]],"
                    " classes: [car]}]}\n"
                    "  - {source: b.mp4, persons: false, zones: [{name: desk, polygon: [[0, 0], [9, 0], [9, 9]],"
                    " classes: [face]}]}\n")
    config = load_config(path)
    assert [zone.classes for camera in config.cameras for zone in camera.zones] == [("car",), ("face",)]


def test_the_cams_yaml_of_docs_video_md_loads_and_shows_every_key(tmp_path, monkeypatch):
    """No doc showed a cams.yaml (city.md and video.md named its keys, not its layout): docs/video.md
    has one, loaded here with the real loader, and it names every setting a camera, line, zone,
    calibration, recognition and the process take (a new one must be shown there too)."""
    import dataclasses
    import re
    from pathlib import Path

    import yaml

    from faceatlas.video.config import RecognitionConfig, WatchConfig
    from faceatlas.video.zones import LineSpec, ZoneSpec

    doc = (Path(__file__).resolve().parents[2] / "docs" / "video.md").read_text()
    block = re.search(r"## `cams\.yaml`.*?```yaml\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "cams.yaml").write_text(block)
    monkeypatch.chdir(tmp_path)  # relative paths (snapshots, events) are the working folder's
    config = load_config(tmp_path / "cams.yaml")
    door, junction = config.cameras
    assert (config.collection, config.tenant, config.detector) == ("staff", "default", "yolox-nano")
    assert config.database == "sqlite:///events.db" and config.webhook.url == "https://example.org/hook"
    assert config.mqtt.topic == "faceatlas" and config.events == Path("events.jsonl")
    assert [line.name for line in door.lines] == ["line1", "entrance"]
    assert (door.lines[1].anchor, door.lines[1].expected, door.lines[1].start) == ("bottom_center", "in", (100, 500))
    assert door.zones[0].levels == {"busy": 10, "crowded": 20} and door.zones[0].queue_after == 20
    assert door.snapshots == tmp_path / "snaps" and door.recognition.far == 1e-4
    assert junction.calibration is not None and junction.zones[1].per_m2 and junction.aliases == {"cell_phone": "car"}
    raw = yaml.safe_load(block)
    cameras = raw["cameras"]
    shown = {
        WatchConfig: set(raw),
        CameraConfig: {key for camera in cameras for key in camera},
        LineSpec: {key for camera in cameras for line in camera["lines"] if isinstance(line, dict) for key in line},
        ZoneSpec: {key for camera in cameras for zone in camera["zones"] for key in zone},
        GroundPlane: set(cameras[1]["calibration"]),
        RecognitionConfig: set(cameras[0]["recognition"]),
    }
    for kind, keys in shown.items():
        missing = {f.name for f in dataclasses.fields(kind)} - keys - {"file"}
        assert not missing, f"docs/video.md's cams.yaml shows no {kind.__name__} setting {sorted(missing)}"


ZONE = "{name: z, polygon: [[0, 0], [9, 0], [9, 9]]"


@pytest.mark.parametrize(("body", "setting"), [
    # each was taken when the file was read, then a traceback mid-run or after the models loaded
    (f"cameras: [{{source: a.mp4, zones: [{ZONE}, anchor: top}}]}}]", "anchor is one of center, bottom_center"),
    ("cameras: [{source: a.mp4, classes: [person, car], aliases: [car]}]", "aliases maps a detector label"),
    ("cameras: [{source: a.mp4, classes: [person, car], aliases: car}]", "aliases maps a detector label"),
    ("cameras: [{source: a.mp4, classes: [person, car], aliases: {cell_phone: truck}}]",
     "aliases: cell_phone -> 'truck': the target is one of the camera's classes (person, car)"),
    ("cameras: [{source: a.mp4, classes: [person, car], aliases: {rocket: car}}]",
     "aliases: 'rocket' is not a label of the COCO detector"),
    ("cameras: [{source: a.mp4, track_timeout: .inf}]", "track_timeout is a number above 0, not inf"),
    ("cameras: [{source: a.mp4, speed_limit_kmh: .inf}]", "speed_limit_kmh is a number above 0, not inf"),
    ("webhook: {url: 'http://[::1', secret: s}", "webhook: 'url' 'http://[::1': not a valid URL"),
    ("webhook: {url: 'http://127.0.0.1:99999/x', secret: s}", "webhook: 'url' 'http://127.0.0.1:99999/x': not a"),
    ("webhook: {url: 'http://', secret: s}", "webhook: 'url' 'http://': names no host"),
    ("webhook: {url: 'http://exa mple.org/h', secret: s}", "holds a space"),
    # each was refused only after the models loaded, without the file's name, or never
    (f"cameras: [{{source: a.mp4, zones: [{ZONE}, per_m2: true}}]}}]", "zone z: per_m2 levels are people per m²"),
    (f"cameras: [{{source: a.mp4, zones: [{ZONE}, per_m2: 'yes'}}]}}]", "zone z: per_m2 is true or false, not 'yes'"),
    ("cameras: [{source: a.mp4, speed_limit_kmh: 50}]", "speed_limit_kmh needs the camera's calibration"),
    (f"cameras: [{{source: a.mp4, zones: [{ZONE}, levels: {{busy: .nan}}}}]}}]", "levels maps a level's name"),
    (f"cameras: [{{source: a.mp4, zones: [{ZONE}, levels: {{busy: -1}}}}]}}]", "a number of 0 or more"),
    ("cameras: [{source: [a]}]", "camera 1: source is a video file, an rtsp:// or http:// URL or a webcam index"),
    ("cameras: [{source: {a: 1}}]", "camera 1: source is a video file"),
    ("cameras: [{source: -1}]", "camera 1: source is a video file"),
    # a corner far past any frame was "a polygon is at least 3 points" though it had 3
    ("cameras: [{source: a.mp4, zones: [{name: z, polygon: [[0, 0], [1.0e+12, 0], [1.0e+12, 1.0e+12]]}]}]",
     "zone z: polygon point 2: a point is [x, y] in pixels, two numbers from -1000000 to 1000000, "
     "not (1000000000000.0, 0)"),
    ("cameras: [{source: a.mp4, zones: [{name: z, polygon: [[0, 0], [9, 0]]}]}]",
     "zone z: a polygon is at least 3 points [x, y] in pixels, not 2"),
    ("cameras: [{source: a.mp4, lines: [{start: [0, 0], end: [1.0e+12, 0]}]}]",
     "line line1: a point is [x, y] in pixels, two numbers from -1000000 to 1000000, not (1000000000000.0, 0)"),
    # a camera that detects nothing analysed every frame for 0 events, exit 0; its classes were ignored
    ("cameras: [{source: a.mp4, faces: false, persons: false}]", "faces and persons are both off"),
    ("cameras: [{source: a.mp4, faces: false, persons: false, classes: [car]}]", "faces and persons are both off"),
    ("cameras: [{source: a.mp4, persons: false, classes: [person, car]}]",
     "classes car are found by the COCO detector, which persons: false turns off"),
])
def test_a_setting_that_failed_at_run_time_is_refused_when_the_file_is_read(tmp_path, body, setting):
    """docs/video.md: settings are checked when cams.yaml is read, one line naming the file and the setting."""
    path = tmp_path / "cams.yaml"
    cameras = "" if body.startswith("cameras") else "cameras: [{source: a.mp4}]\n"
    path.write_text(cameras + body + "\n")
    with pytest.raises(InvalidInput) as refused:
        load_config(path)
    said = str(refused.value)
    assert said.startswith(f"{path}: ") and setting in said and "\n" not in said, said


def test_settings_that_need_a_calibration_load_with_one_and_a_webcam_index_is_a_source(tmp_path):
    path = tmp_path / "cams.yaml"
    path.write_text(f"cameras:\n  - {{source: 0, speed_limit_kmh: 50, classes: [person, car], aliases: {{bus: car}},"
                    f" calibration: {{image: {IMAGE}, world: {GROUND}}},\n     zones: [{ZONE}, per_m2: true, "
                    "anchor: center, levels: {calm: 0, busy: 0.5}}]}\n"
                    "webhook: {url: 'http://user:pw@[::1]:8080/h?t=1', secret: s}\n")
    config = load_config(path)
    camera = config.cameras[0]
    assert camera.source == "0" and camera.speed_limit_kmh == 50 and camera.zones[0].levels == {"calm": 0, "busy": 0.5}
    assert config.webhook is not None and config.webhook.url.startswith("http://user:pw@[::1]:8080")


def test_a_refusal_at_load_is_one_line_of_watch_and_a_yaml_source_points_to_config(tmp_path):
    """`watch --config` with `track_timeout: .inf` ran until an OverflowError; `watch cams.yaml` (the file
    as the video SOURCE) said "[Errno 1094995529] Invalid data found when processing input"."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    path = tmp_path / "cams.yaml"
    path.write_text(f"events: {tmp_path / 'events.jsonl'}\ncameras: [{{source: a.mp4, track_timeout: .inf}}]\n")
    result = CliRunner().invoke(app, ["watch", "--config", str(path)])
    assert result.exit_code == 2 and "track_timeout is a number above 0, not inf" in result.output, result.output
    assert str(path) in result.output and "Traceback" not in result.output
    for name in ("cams.yaml", "cams.YML"):
        result = CliRunner().invoke(app, ["watch", str(tmp_path / name)])
        assert result.exit_code == 2 and f"is a config file, not a video: use --config {tmp_path / name}" in \
            result.output, result.output
    assert not (tmp_path / "events.jsonl").exists()


def test_no_persons_over_a_camera_whose_faces_are_off_is_refused_before_it_runs(tmp_path, pedestrians):
    """`watch --config cams.yaml --no-persons` with a camera of `faces: false` analysed all 1,394 frames
    of a clip, counted nothing and exited 0. Now one line names the camera; nothing is written."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    path = tmp_path / "cams.yaml"
    path.write_text(f"events: {tmp_path / 'events.jsonl'}\ndatabase: sqlite:///{tmp_path / 'ev.db'}\n"
                    f"cameras: [{{name: hall, source: {pedestrians}, faces: false}},\n"
                    f"          {{name: door, source: {pedestrians}}}]\n")
    result = CliRunner().invoke(app, ["watch", "--config", str(path), "--no-persons"])
    assert result.exit_code == 2 and "camera hall: faces are off and persons are turned off for this run" in \
        result.output and "door" not in result.output, result.output
    assert not (tmp_path / "events.jsonl").exists() and not (tmp_path / "ev.db").exists()


# the probe's calibration: a road narrowing to the distance, its horizon (w = 0) at image y ≈ 182
HORIZON = "{image: [[500, 300], [780, 300], [1280, 720], [0, 720]], world: [[0, 0], [10, 0], [10, 30], [0, 30]]}"


@pytest.mark.parametrize(("top", "says"), [
    (0, "corner \\[0, 0\\] reaches beyond the calibration's horizon \\(the image's y≈182 at x 0"),  # the frame
    (150, "reaches beyond the calibration's horizon \\(the image's y≈182"),  # the sky alone
    (182, "horizon \\(the image's y≈182"),  # on it
    (190, "comes within a tenth of the calibration's distance to the calibration's horizon \\(the image's y≈182"),
    (200, None), (300, None),  # the ground: accepted
])
def test_a_density_zone_up_to_or_past_the_horizon_is_refused_at_load(tmp_path, top, says):
    """A zone's ground area came from its polygon mapped through the homography whatever its corners: a
    zone of the whole frame (crossing the horizon) was 322.85 m², less than its lower part alone (835.71),
    and the sky above it 11,198 m²; densities per m² from them were taken."""
    path = tmp_path / "cams.yaml"
    path.write_text(f"cameras:\n  - {{name: hall, source: a.mp4, calibration: {HORIZON},\n"
                    f"     zones: [{{name: far, polygon: [[0, {top}], [1280, {top}], [1280, 720], [0, 720]], "
                    "per_m2: true, levels: {busy: 0.72}}]}\n")
    if says is None:
        camera = load_config(path).cameras[0]
        assert camera.calibration.horizon_problem(camera.zones[0].polygon) is None
        return
    with pytest.raises(InvalidInput, match=f"camera hall: zone far: per_m2: .*{says}") as refused:
        load_config(path)
    assert len(str(refused.value).splitlines()) == 1
    # a zone without per_m2 counts objects, no area: it may reach the sky
    path.write_text(f"cameras:\n  - {{name: hall, source: a.mp4, calibration: {HORIZON},\n"
                    f"     zones: [{{name: far, polygon: [[0, {top}], [1280, {top}], [1280, 720], [0, 720]]}}]}}\n")
    assert load_config(path).cameras[0].zones[0].name == "far"


@pytest.mark.parametrize("body", [
    "cameras: [{source: a.mp4, strid: 2}]",  # an unknown key: was bad_request
    "cameras: [{source: a.mp4, stride: -1}]",  # a value out of range: validation_error
    "cameras: [{source: a.mp4, zones: [{name: z, polygon: [[0, 0], [9, 0], [9, 9]], per_m2: true}]}]",
    "cameras: 5",
    "cameras: [",
])
def test_every_mistake_in_a_cams_yaml_is_one_code(tmp_path, body):
    """cams.yaml mistakes exited with `bad_request` or `validation_error` depending on where they were
    found; a script could not tell one kind of mistake by its code."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    path = tmp_path / "cams.yaml"
    path.write_text(body + "\n")
    with pytest.raises(InvalidArgument):
        load_config(path)
    result = CliRunner().invoke(app, ["watch", "--config", str(path)])
    assert result.exit_code == 2 and "error (validation_error)" in result.output, result.output


def test_camera_names_that_look_the_same_are_one_name(tmp_path):
    """"Jos\\u00e9" and "Jose\\u0301" were two cameras that every list showed alike, their counts and
    events two series; a camera's name is kept composed (NFC, the gallery's rule for names), so two of
    them in one file are duplicates, and a name holding a C1 control, a line separator or a bidi
    override (only C0 controls were refused) is refused as the others are."""
    decomposed, composed = "Jose\u0301", "Jos\u00e9"
    path = tmp_path / "cams.yaml"
    path.write_text(f"cameras: [{{source: a.mp4, name: {decomposed}}}, {{source: b.mp4, name: {composed}}}]\n",
                    encoding="utf-8")
    with pytest.raises(InvalidInput, match=f"camera names are unique .*twice: {composed}"):
        load_config(path)
    path.write_text(f"cameras: [{{source: a.mp4, name: {decomposed}}}]\n", encoding="utf-8")
    assert load_config(path).cameras[0].name == composed
    assert CameraConfig(source="a.mp4", name=decomposed).name == composed
    for hidden in ("\x85", "\u2028", "\u202e", "\u2066"):
        with pytest.raises(InvalidArgument, match="a camera name is 1 to 200 characters without"):
            CameraConfig(source="a.mp4", name=f"door{hidden}")
    for padded in (" door", "door "):
        with pytest.raises(InvalidArgument, match="surrounding blanks"):
            CameraConfig(source="a.mp4", name=padded)
