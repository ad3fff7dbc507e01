"""Camera and sink settings: dataclasses, loaded from a YAML file for several cameras per process.

Example ``cams.yaml``::

    collection: staff            # gallery collection to recognise against (optional)
    gallery: sqlite:///gallery.db
    events: events.jsonl         # JSON lines sink
    database: sqlite:///events.db
    webhook: {url: "https://example.org/hook", secret: "s3cret"}
    mqtt: {host: localhost, port: 1883, topic: faceatlas}
    detector: yolox-nano         # or yolox-s: the larger COCO detector, downloaded by URL + sha256
    cameras:
      - name: door
        source: rtsp://10.0.0.5/stream1
        stride: 2
        lines: ["0,360,1280,360"]
        zones: [{name: hall, polygon: [[0,0],[640,0],[640,720],[0,720]], levels: {busy: 10, crowded: 20},
                 min_dwell: 1.0, hysteresis: 1}]   # a level holds >= 1 s; left 1 below its start
        watchlist: [alice]
        output: door.mp4
        snapshots: snaps/
        blur_unlisted: true        # the default: faces not on the watchlist are blurred in saved images
      - name: junction             # traffic (see docs/city.md)
        source: rtsp://10.0.0.6/stream1
        classes: [person, car, bus, truck, motorcycle, bicycle]
        lines: [{name: northbound, start: [0, 300], end: [640, 300], expected: in}]
        zones: [{name: bay, polygon: [[0,0],[300,0],[300,200],[0,200]], classes: [car], max_dwell: 600},
                {name: platform, polygon: [[0,400],[1280,400],[1280,720],[0,720]], per_m2: true,
                 levels: {busy: 1.0, crowded: 2.0}, hysteresis: 0.3}]
        calibration: {image: [[0,300],[1280,300],[1280,720],[0,720]], world: [[0,0],[12,0],[12,20],[0,20]]}
        speed_limit_kmh: 50
        blur_plates: true          # the default: the lower 40% of every vehicle box is blurred
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from faceatlas.errors import InvalidArgument, InvalidInput
from faceatlas.video.analytics import GroundPlane
from faceatlas.video.annotate import check_video_path
from faceatlas.video.shots import DEFAULT_CUT_DISTANCE
from faceatlas.video.zones import LineSpec, ZoneSpec


@dataclass
class RecognitionConfig:
    """When and how tracks are recognised."""

    min_quality: float = 0.15
    samples: int = 5
    min_evidence: int = 3
    min_agree: int = 2
    improve_margin: float = 0.1
    recheck_s: float | None = 1.0  # a named track's latest face is matched again this often (None: never)
    threshold: float | None = None
    far: float = 1e-4


@dataclass
class CameraConfig:
    """One camera: its source, detection stride, counting geometry and privacy settings.

    ``scene_cut``: the histogram distance between consecutive frames taken as a cut to another
    shot (every track then ends, and the new shot is analyzed at once); None turns it off.
    ``blur_unlisted``: every detected face not identified as a watchlist subject is blurred in
    snapshots and the output video; ``blur_plates``: so is the lower ``plate_share`` (40%) of
    every vehicle box (where plates are on a car seen from the front or back, or from above at an
    angle: there is no plate detector; 1.0 blurs the whole vehicle, for cameras straight above).
    Both on unless the operator turns them off.
    ``classes``: the COCO classes tracked (persons and road users); ``aliases`` maps a detector's
    label to one of them (an overhead camera: YOLOX-Nano calls a car seen from above a cell phone).
    ``calibration``: the ground plane (speeds, densities); ``speed_limit_kmh``: ``speeding`` events.
    ``start_time``: when a recorded file started (its per-minute counts are placed from there);
    default: when the run starts."""

    source: str
    name: str = "camera"
    stride: int = 2
    faces: bool = True
    persons: bool = True
    lines: list[LineSpec] = field(default_factory=list)
    zones: list[ZoneSpec] = field(default_factory=list)
    watchlist: list[str] = field(default_factory=list)
    output: Path | None = None
    snapshots: Path | None = None
    blur_unlisted: bool = True
    track_timeout: float = 1.5
    realtime: bool = False
    scene_cut: float | None = DEFAULT_CUT_DISTANCE
    recognition: RecognitionConfig = field(default_factory=RecognitionConfig)
    classes: list[str] = field(default_factory=lambda: ["person"])
    aliases: dict[str, str] = field(default_factory=dict)
    calibration: GroundPlane | None = None
    speed_limit_kmh: float | None = None
    blur_plates: bool = True
    plate_share: float = 0.4  # the lower part of a vehicle box blurred; 1.0: all of it (overhead cameras)
    start_time: datetime | None = None  # a recording's wall-clock start (UTC) for its per-minute counts

    def __post_init__(self) -> None:
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise InvalidArgument(f"camera {self.name}: stride is analysing every Nth frame, N a whole number of "
                                  f"1 or more, not {self.stride!r}")
        if self.output is not None:
            check_video_path(self.output)


@dataclass
class WebhookConfig:
    url: str
    secret: str
    max_attempts: int = 8
    backoff_start: float = 0.5
    backoff_max: float = 60.0
    timeout: float = 10.0


@dataclass
class MqttConfig:
    """The broker; while it is unreachable, events wait in a queue of ``max_queued`` and the
    connection is retried quietly, the delay doubling from ``backoff_start`` to ``backoff_max`` s."""

    host: str = "localhost"
    port: int = 1883
    topic: str = "faceatlas"
    username: str | None = None
    password: str | None = None
    max_queued: int = 10_000
    backoff_start: int = 1
    backoff_max: int = 120


@dataclass
class WatchConfig:
    """Everything a `faceatlas watch` process runs: cameras, the collection and the sinks, all on
    behalf of one ``tenant`` (its gallery and its stored events)."""

    cameras: list[CameraConfig]
    collection: str | None = None
    gallery: str | None = None
    tenant: str = "default"
    events: Path | None = None
    database: str | None = None
    webhook: WebhookConfig | None = None
    mqtt: MqttConfig | None = None
    detector: str = "yolox-nano"  # the COCO object detector: yolox-nano (shipped) or yolox-s (by URL)


def _line(raw: str | dict[str, Any], number: int) -> LineSpec:
    if isinstance(raw, str):
        return LineSpec.parse(raw, f"line{number}")
    return LineSpec(tuple(raw["start"]), tuple(raw["end"]), raw.get("name", f"line{number}"),
                    raw.get("anchor", "center"), raw.get("min_frames", 2), raw.get("expected"))


def _zone(raw: dict[str, Any]) -> ZoneSpec:
    classes = raw.get("classes")
    return ZoneSpec(**{**raw, "polygon": [tuple(p) for p in raw["polygon"]],
                       "classes": tuple(classes) if classes is not None else None})


def _settings_of(kind: type, raw: object, where: str, *, besides: tuple[str, ...] = ()) -> dict[str, Any]:
    """``raw`` as the settings of the dataclass ``kind`` (``besides``: its fields read elsewhere): a
    mapping of known names, else :class:`InvalidInput` saying ``where`` and which names it takes."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: a mapping of settings, not {type(raw).__name__} {str(raw)[:60]!r}")
    known = {f.name for f in fields(kind)} - set(besides)
    unknown = set(raw) - known
    if unknown:
        raise InvalidInput(f"{where}: unknown settings {sorted(map(str, unknown))} (known: {', '.join(sorted(known))})")
    needed = [f.name for f in fields(kind) if f.name in known and f.default is MISSING
              and f.default_factory is MISSING and f.name not in raw]
    if needed:
        raise InvalidInput(f"{where}: missing settings {needed}")
    return dict(raw)


def _camera(raw: dict[str, Any], number: int, path: Path) -> CameraConfig:
    raw = _settings_of(CameraConfig, raw, f"{path}: camera {number}")
    raw.setdefault("name", f"camera{number}")
    raw["source"] = str(raw["source"])
    raw["lines"] = [_line(line, i) for i, line in enumerate(raw.get("lines", []), 1)]
    raw["zones"] = [_zone(z) for z in raw.get("zones", [])]
    if raw.get("calibration") is not None:
        plane = raw["calibration"]
        raw["calibration"] = GroundPlane([tuple(p) for p in plane["image"]], [tuple(p) for p in plane["world"]],
                                         plane.get("speed_window", 1.0))
    raw["recognition"] = RecognitionConfig(**raw.get("recognition", {}))
    if isinstance(raw.get("start_time"), str):
        raw["start_time"] = datetime.fromisoformat(raw["start_time"])
    for key in ("output", "snapshots"):
        if raw.get(key) is not None:
            raw[key] = Path(raw[key])
    return CameraConfig(**raw)


def load_config(path: Path) -> WatchConfig:
    """Read a ``cams.yaml`` file; one that cannot be read, is not YAML or not a valid
    configuration is :class:`InvalidInput` saying where."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path}: no such configuration file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot be read as a YAML file ({exc})") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {yaml_problem(exc)}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput(f"{path}: a cams.yaml is a mapping with 'cameras: [...]', not a {type(raw).__name__}")
    try:
        listed = raw.pop("cameras", []) or []
        if not isinstance(listed, list) or not all(isinstance(c, dict) for c in listed):
            raise TypeError("'cameras' is a list of cameras, each a mapping with a 'source'")
        cameras = [_camera(c, i, path) for i, c in enumerate(listed, 1)]
    except (TypeError, KeyError, ValueError) as exc:  # a zone, line or calibration with a missing or unknown key
        raise InvalidInput(f"{path}: {exc}") from exc
    if not cameras:
        raise InvalidInput(f"{path}: no cameras")
    raw = _settings_of(WatchConfig, raw, str(path), besides=("cameras",))
    webhook = _settings_of(WebhookConfig, raw.pop("webhook"), f"{path}: webhook") if raw.get("webhook") else None
    mqtt = _settings_of(MqttConfig, raw.pop("mqtt"), f"{path}: mqtt") if raw.get("mqtt") else None
    if webhook is not None and not str(webhook.get("url", "")).startswith(("http://", "https://")):
        raise InvalidInput(f"{path}: webhook: 'url' is an http:// or https:// address, not {webhook.get('url')!r}")
    events = raw.pop("events", None)
    try:
        return WatchConfig(
            cameras,
            webhook=WebhookConfig(**webhook) if webhook else None,
            mqtt=MqttConfig(**mqtt) if mqtt else None,
            events=Path(events) if events else None,
            **raw,
        )
    except TypeError as exc:  # a sink without a setting it needs (the webhook's url or secret)
        raise InvalidInput(f"{path}: {exc}") from exc


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem
