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
        snapshots: snaps/          # relative: to the working folder; events hold absolute paths
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

import math
import os
import re
import urllib.parse
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator
from pydantic.dataclasses import dataclass as checked

from faceatlas.db import normalize_url, sqlite_path
from faceatlas.engine.draw import same_file as same_path
from faceatlas.engine.persons import COCO_CLASSES, VEHICLE_CLASSES
from faceatlas.errors import FileMissing, InvalidArgument, InvalidInput
from faceatlas.gallery import check_text, space_owner
from faceatlas.video.analytics import GroundPlane
from faceatlas.video.annotate import check_video_path
from faceatlas.video.shots import DEFAULT_CUT_DISTANCE
from faceatlas.video.sources import is_live
from faceatlas.video.zones import LineSpec, ZoneSpec

# The settings dataclasses of a file are checked by pydantic (types and ranges: a numeric webhook
# secret, a port of 99999, a watchlist given as one string were kept and failed mid-run, or never).
STRICT_SETTINGS = ConfigDict(extra="forbid")
Positive = Annotated[float, Field(gt=0)]


@checked(config=STRICT_SETTINGS)
class RecognitionConfig:
    """When and how tracks are recognised."""

    min_quality: Annotated[float, Field(ge=0, le=1)] = 0.15
    samples: Annotated[int, Field(ge=1)] = 5
    min_evidence: Annotated[int, Field(ge=1)] = 3
    min_agree: Annotated[int, Field(ge=1)] = 2
    improve_margin: Annotated[float, Field(ge=0)] = 0.1
    recheck_s: Positive | None = 1.0  # a named track's latest face is matched again this often (None: never)
    threshold: Annotated[float, Field(ge=-1, le=1)] | None = None
    far: Annotated[float, Field(gt=0, lt=1)] = 1e-4


def checked_settings(kind: Any, raw: dict[str, Any], where: str, *,
                     error: type[InvalidInput] = InvalidInput) -> Any:
    """``kind(**raw)``, a settings dataclass checked by pydantic; a value of the wrong type or out
    of its range is ``error`` (:class:`InvalidInput`) saying ``where``, which setting and why, in one line."""
    try:
        return kind(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise error(f"{where}: {problems}"[:400]) from None
    except TypeError as exc:  # a dataclass of the standard library: a missing or unknown name
        raise error(f"{where}: {exc}") from None


# A camera's name is a topic level of MQTT, a folder of its snapshots and a part of URLs: none of
# '/', '\\', '+', '#', '?', a control character, and not '.' or '..'.
_CAMERA_NAME = re.compile(r"[^/\\+#?\x00-\x1f\x7f]{1,200}")
CAMERA_NAME_MAX_LENGTH = 200


def check_camera_name(name: object) -> str:
    """``name`` as a camera's name is kept: 1 to 200 characters without '/', '\\', '+', '#', '?' or
    surrounding blanks, not '.' or '..', and by the gallery's rule for names
    (:func:`~faceatlas.gallery.check_text`): no control character (C1, bidi overrides and line
    separators too), composed (NFC): "Jos\u00e9" and "Jose\u0301" look the same, so they are one
    camera (twice in a file: refused as duplicates), whose events and counts are found by either."""
    if (isinstance(name, str) and _CAMERA_NAME.fullmatch(name) and name not in (".", "..")
            and name == name.strip()):
        try:
            return check_text(name, "camera name", max_length=CAMERA_NAME_MAX_LENGTH) or ""
        except InvalidArgument:
            pass
    raise InvalidArgument(f"a camera name is 1 to {CAMERA_NAME_MAX_LENGTH} characters without '/', '\\', '+', "
                          f"'#', '?', control characters or surrounding blanks, not '.' or '..' "
                          f"(got {str(name)[:60]!r}): it names the camera's MQTT topic and snapshot folder")


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
        self.name = check_camera_name(self.name)
        for name in ("faces", "persons", "blur_unlisted", "blur_plates", "realtime"):
            if not isinstance(getattr(self, name), bool):  # 'blur_unlisted:' (null) or 0 turned blurring off
                raise InvalidArgument(f"camera {self.name}: {name} is true or false, not {getattr(self, name)!r}")
        if not isinstance(self.classes, list) or not all(isinstance(c, str) for c in self.classes):
            raise InvalidArgument(f"camera {self.name}: classes is a list of class names, not {self.classes!r}"[:200])
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise InvalidArgument(f"camera {self.name}: stride is analysing every Nth frame, N a whole number of "
                                  f"1 or more, not {self.stride!r}")
        if isinstance(self.watchlist, str) or not all(isinstance(s, str) for s in self.watchlist):
            raise InvalidArgument(f"camera {self.name}: watchlist is a list of subject ids, "
                                  f"not {self.watchlist!r}"[:200])
        for name, zero_ok in (("track_timeout", False), ("speed_limit_kmh", False), ("scene_cut", True)):
            value = getattr(self, name)  # .inf too: a track_timeout of .inf was an OverflowError mid-run
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or not (value >= 0 if zero_ok else value > 0)):
                bound = "of 0 or more" if zero_ok else "above 0"
                raise InvalidArgument(f"camera {self.name}: {name} is a number {bound}, not {value!r}")
        if not isinstance(self.plate_share, (int, float)) or not 0 < self.plate_share <= 1:
            raise InvalidArgument(f"camera {self.name}: plate_share is the share of a vehicle box blurred, above 0 "
                                  f"and at most 1, not {self.plate_share!r}")
        if isinstance(self.start_time, date) and not isinstance(self.start_time, datetime):  # YAML's 2026-12-04
            self.start_time = datetime(self.start_time.year, self.start_time.month, self.start_time.day, tzinfo=UTC)
        if self.start_time is not None and not isinstance(self.start_time, datetime):
            raise InvalidArgument(f"camera {self.name}: start_time is an ISO 8601 date and time, not "
                                  f"{self.start_time!r}")
        if not self.classes:
            raise InvalidArgument(f"camera {self.name}: classes names at least one class to track")
        tracked = ", ".join(self.classes)[:200]
        for name in self.classes:  # 'cars' failed after the models loaded
            if name != "person" and name not in VEHICLE_CLASSES:
                raise InvalidArgument(f"camera {self.name}: class {name!r} is not person or one of "
                                      f"{', '.join(VEHICLE_CLASSES)}"[:300])
        self._check_aliases(tracked)
        if self.calibration is None:  # both were taken: no speeding event ever, or a refusal after the models loaded
            if self.speed_limit_kmh is not None:
                raise InvalidArgument(f"camera {self.name}: speed_limit_kmh needs the camera's calibration (speeds "
                                      "are measured on the ground plane: calibration: {image: ..., world: ...})")
            for zone in self.zones:
                if zone.per_m2:
                    raise InvalidArgument(f"camera {self.name}: zone {zone.name}: per_m2 levels are people per m² "
                                          "and need the camera's calibration (calibration: {image: ..., world: ...})")
        else:  # a density is people per m² of ground: a zone up to or past the horizon has no such area
            for zone in self.zones:
                problem = self.calibration.horizon_problem(zone.polygon) if zone.per_m2 else None
                if problem is not None:
                    raise InvalidArgument(f"camera {self.name}: zone {zone.name}: per_m2: {problem}")
        # a zone counts what the camera tracks (faces on a camera without the person detector): a zone
        # of 'cars' (a typo) or of 'car' on a camera of persons stayed 0, and its stored class was refused
        countable = {*self.classes, *(() if self.persons else ("face",))}
        for zone in self.zones:
            outside = [str(name) for name in zone.classes or () if name not in countable]
            if outside:
                raise InvalidArgument(f"camera {self.name}: zone {zone.name}: classes {', '.join(outside)[:100]} "
                                      f"not among the camera's classes ({tracked}); a zone counts the classes its "
                                      "camera tracks")
        for kind, specs in (("line", self.lines), ("zone", self.zones)):
            names = [spec.name for spec in specs]
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:  # their counts were merged: two zones 'z' stored one blended zone:z:mean
                raise InvalidArgument(f"camera {self.name}: {kind} names are unique within a camera (each names its "
                                      f"counts and events); twice: {', '.join(twice)[:200]}")
        if self.snapshots is not None:
            # relative: to the working folder of the run (as every path of a cams.yaml), made absolute
            # now: events store their snapshot's path, which the API server (GET /v1/events/{id}/snapshot)
            # and a tenant's erasure read from their own working folder
            self.snapshots = Path(os.path.abspath(self.snapshots))
        if self.snapshots is not None and self.snapshots.exists() and not self.snapshots.is_dir():
            raise InvalidArgument(f"camera {self.name}: snapshots {self.snapshots} is a file, not a folder")
        if self.output is not None:
            check_video_path(self.output)
            if Path(self.source).is_file() and same_file(self.output, self.source):
                raise InvalidArgument(f"camera {self.name}: output {self.output} is the camera's source: writing it "
                                      "would destroy the video being read")


    def _check_aliases(self, tracked: str) -> None:
        """``aliases`` maps COCO labels to the camera's classes (a list was an AttributeError, a string
        read letter by letter, an unknown label or target refused only after the models loaded)."""
        aliases = self.aliases
        if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in aliases.items()):
            raise InvalidArgument(f"camera {self.name}: aliases maps a detector label to one of the camera's "
                                  f"classes ({{cell_phone: car}}), not {str(aliases)[:60]!r}")
        for label, target in aliases.items():
            if label not in COCO_CLASSES:
                raise InvalidArgument(f"camera {self.name}: aliases: {label[:40]!r} is not a label of the COCO "
                                      "detector (cell_phone, suitcase, bus, ...)")
            if target not in self.classes:
                raise InvalidArgument(f"camera {self.name}: aliases: {label} -> {target[:40]!r}: the target is one "
                                      f"of the camera's classes ({tracked})")


def camera_name(source: str) -> str:
    """The name of a camera given by its source alone: the file's (or URL's last part's) stem, with
    what a camera name may not hold as '_' (``clip #2.mp4`` is camera ``clip _2``), without its
    surrounding blanks, composed (NFC); ``camera`` when nothing of it is a camera name."""
    stem = Path(source).stem or str(source)
    name = re.sub(r"[/\\+#?\x00-\x1f\x7f]", "_", stem)[:200].strip()
    try:
        return check_camera_name(name)
    except InvalidArgument:  # empty, dots alone, a C1 control or a bidi override in the file's name
        return "camera"


def check_outputs(source: str, **outputs: Path | None) -> None:
    """Refuse outputs (by option name: ``output``, ``events``) that are the source file (writing
    one would destroy the video being read) or one another (one written into the other), before
    anything is opened: :class:`InvalidArgument`."""
    _refuse_overlaps([("the source video", source, _VIDEO_READ)],
                     [(name, path) for name, path in outputs.items() if path is not None])


_VIDEO_READ = "the video being read"


def check_run_outputs(cameras: list[CameraConfig], *, events: Path | str | None = None,
                      database: str | None = None, config: Path | str | None = None) -> None:
    """Refuse, before anything is opened, a run whose outputs (each camera's ``output`` video and
    ``snapshots`` folder, the ``events`` file, the ``database`` file of an SQLite URL) include a
    camera's source file (it was overwritten while that camera read it, or events were appended to
    the video), the ``config`` file the run was read from (events appended to the YAML: the next
    start failed) or one another (two cameras' videos in one file: one of them lost; the events
    appended to the video written over them), or an ``events`` file that cannot be one (a folder, or
    under a file): :class:`InvalidArgument` naming them. Cameras may share a snapshots folder (each
    names its files). URLs and webcam indexes name no file."""
    several = len(cameras) > 1
    sources: list[tuple[str, Path | str, str]] = [
        (f"camera {camera.name}'s source" if several else "the source video", camera.source, _VIDEO_READ)
        for camera in cameras]
    if config is not None:
        sources.append(("the configuration file", config, "the settings of the run (its next start would fail)"))
    outputs: list[tuple[str, Path | str]] = []
    for camera in cameras:
        of = f"camera {camera.name}: " if several else ""
        if camera.output is not None:
            outputs.append((f"{of}output", camera.output))
        if camera.snapshots is not None:
            outputs.append((f"{of}snapshots", camera.snapshots))
    if events is not None and str(events) != "-":  # '-': standard output
        _check_events_file(Path(events))
        outputs.append(("events", events))
    database_file = _database_file(database)
    if database_file is not None:
        outputs.append(("database", database_file))
    _refuse_overlaps(sources, outputs)


def _check_events_file(path: Path) -> None:
    """:class:`InvalidArgument` for an events file that is a folder, or below a file (said after the
    models loaded, in the system's words: "adir: is a directory", "ro.jsonl: file exists")."""
    if path.is_dir():
        raise InvalidArgument(f"events {path} is a folder: give a file for the events (JSON lines), such as "
                              f"{path / 'events.jsonl'}")
    for parent in path.parents:
        if parent.is_dir():
            break
        if parent.exists():
            raise InvalidArgument(f"events {path} cannot be written: {parent} is a file, not a folder")


def _refuse_overlaps(sources: list[tuple[str, Path | str, str]], outputs: list[tuple[str, Path | str]]) -> None:
    """:class:`InvalidArgument` naming an output (name, path) that is a source (name, path, what
    writing it destroys) or another output; snapshots folders may be shared (each camera names its files)."""
    for name, path in outputs:
        for source_name, source, read in sources:
            if same_file(path, source):
                raise InvalidArgument(f"{name} {path} is {source_name}: writing it would destroy {read}; "
                                      "give another file")
    for index, (name, path) in enumerate(outputs):
        for other, other_path in outputs[index + 1:]:
            if name.endswith("snapshots") and other.endswith("snapshots"):
                continue
            if same_file(path, other_path):
                raise InvalidArgument(f"{name} and {other} are one file ({path}): one would be written over the "
                                      "other; give two files")


def prepare_outputs(cameras: list[CameraConfig]) -> None:
    """Make each camera's snapshots folder and its output video's folder before the run, and check
    that they (and the output video) can be written: one that cannot (a folder under /proc, a
    read-only one) is :class:`InvalidInput` naming it (the camera died at its first snapshot, and
    the run said "cannot read video source")."""
    for camera in cameras:
        if camera.snapshots is not None:
            _prepare_folder(Path(camera.snapshots), "snapshots", camera.snapshots, f"camera {camera.name}: ")
        if camera.output is not None:
            prepare_output_file(camera.output, "output", of=f"camera {camera.name}: ")


def prepare_output_file(path: Path | str, what: str = "output", *, of: str = "", made: list[Path] | None = None,
                        ) -> None:
    """Make the folder of the output file ``path`` (``what``: the option naming it) and check, before
    the run, that the file can be written there: one that cannot (under /proc, in a read-only
    folder, a file that cannot be opened for writing) is :class:`InvalidInput` naming the output
    (``of`` first, such as ``"camera door: "``), not the source: `drive` and `ar` said "cannot read
    video source" at the first frame. A file already there is opened for writing and closed, not
    changed; one that is not is made and removed again. The folders made (none that were there)
    are added to ``made``, as they are made: a run that fails gives them to :func:`remove_made_folders`."""
    path = Path(path)
    _prepare_folder(path.parent, what, path, of, made)
    try:
        if path.exists():
            if path.is_file():
                os.close(os.open(path, os.O_WRONLY))  # no O_TRUNC: nothing of it changes
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            path.unlink()
    except OSError as exc:  # os.access says yes to root: /proc is no place for files all the same
        reason = exc.strerror.lower() if exc.strerror else str(exc)
        raise InvalidInput(f"{of}{what} {path} cannot be written ({reason})") from None


def _prepare_folder(folder: Path, what: str, path: Path | str, of: str, made: list[Path] | None = None) -> None:
    missing: list[Path] = []  # the folder and those above it that are not there yet, deepest first
    for above in (folder, *folder.parents):
        if above.exists() or above.is_symlink():
            break
        missing.append(above)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror.lower() if exc.strerror else str(exc)
        raise InvalidInput(f"{of}{what} {path} cannot be written: the folder {folder} cannot be made "
                           f"({reason})") from None
    finally:
        if made is not None:
            made.extend(above for above in missing if above.is_dir())
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidInput(f"{of}{what} {path} cannot be written (permission denied)")


def remove_made_folders(made: list[Path]) -> None:
    """Remove the folders a run made for its outputs (:func:`prepare_output_file`'s ``made``), deepest
    first, when it failed before writing anything into them: only empty ones (``rmdir``), so nothing
    written is lost; a failed run left them behind (`-o n1/a/x.mp4` of a source that did not open)."""
    for folder in sorted(set(made), key=lambda folder: len(folder.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:  # not empty (something was written there), or gone already
            continue


def _database_file(url: str | None) -> Path | None:
    """The file of an SQLite database URL; None for another database, or a URL that does not parse
    (the sink says why when it opens it)."""
    if not url:
        return None
    try:
        return sqlite_path(normalize_url(url))
    except Exception:  # noqa: BLE001 - any URL sqlalchemy cannot parse names no file here
        return None


def same_file(path: Path | str, other: Path | str) -> bool:
    """Whether ``path`` and ``other`` name one file, links resolved: ``os.path.samefile`` when both
    exist (a symlink, a hard link), their resolved paths otherwise (an output not written yet). A
    URL or a webcam index names no file. Outputs are checked with it before anything is written:
    an output that is the source being read (or another output) would destroy it."""
    if is_live(path) or is_live(other):
        return False
    return same_path(path, other)


@checked(config=STRICT_SETTINGS)
class WebhookConfig:
    url: Annotated[str, Field(pattern=r"^https?://")]
    secret: Annotated[str, Field(min_length=1)]
    # an event is retried until it is ``retry_for`` seconds old (counted from its emission; one that
    # waited longer behind an outage still gets one try); ``max_attempts`` bounds the tries too when set
    retry_for: Positive = 900.0
    max_attempts: Annotated[int, Field(ge=1)] | None = None
    max_queued: Annotated[int, Field(ge=1)] = 10_000  # events waiting; beyond: dead-lettered, counted, warned once
    backoff_start: Positive = 0.5
    backoff_max: Positive = 60.0
    timeout: Positive = 10.0
    dead_letter: Annotated[str, Field(min_length=1)] | None = None  # JSON lines of every event not delivered
    flush_timeout: Positive = 30.0  # at close (end, SIGTERM, Ctrl-C): how long queued events may still go out

    @field_validator("url")
    @classmethod
    def _posts_somewhere(cls, url: str) -> str:
        problem = url_problem(url)
        if problem is not None:  # made in code, not read by load_config (which says it first)
            raise ValueError(f"{url[:80]!r} {problem}")
        return url


@checked(config=STRICT_SETTINGS)
class MqttConfig:
    """The broker; while it is unreachable, events wait in a queue of ``max_queued`` and the
    connection is retried quietly, the delay doubling from ``backoff_start`` to ``backoff_max`` s."""

    host: Annotated[str, Field(min_length=1)] = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    topic: Annotated[str, Field(min_length=1, pattern=r"^[^+#\x00]+$")] = "faceatlas"
    username: str | None = None
    password: str | None = None
    max_queued: Annotated[int, Field(ge=1)] = 10_000
    backoff_start: Annotated[int, Field(ge=1)] = 1
    backoff_max: Annotated[int, Field(ge=1)] = 120
    # MQTT 5 (a PUBACK says whether the broker took the message: an ACL deny is not delivered) or 3.1.1
    # (the broker acknowledges what it dropped), for a broker without 5
    protocol: Literal["5", "3.1.1"] = "5"
    tls: bool = False  # TLS to the broker (the login and the events otherwise travel in clear)
    ca_certs: str | None = None  # the CA file that signed the broker's certificate (implies tls; default: the system's)

    @field_validator("protocol", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


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
    file: Path | None = None  # the cams.yaml these settings were read from: never one of the outputs

    def __post_init__(self) -> None:
        names = [camera.name for camera in self.cameras]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:  # their per-minute counts merged into one series, their progress into one bar
            raise InvalidArgument(f"camera names are unique (each names its counts and events); twice: "
                                  f"{', '.join(twice)[:200]}")
        checked_events_tenant(self.tenant)
        check_run_outputs(self.cameras, events=self.events, database=self.database, config=self.file)



def events_tenant(space: str) -> str:
    """The tenant that the events of a run in the gallery space ``space`` (``tenant:`` in
    cams.yaml) are stored under: the service tenant's id for its space ``svc:<id>`` (the API lists
    tenant ``acme``'s events, and a collection acme made through the API is in space
    ``svc:acme``), else the space's name (``default``, a CLI tenant)."""
    return space_owner(space) or space


def checked_events_tenant(space: object) -> str:
    """:func:`events_tenant` of a space a user gave (cams.yaml's ``tenant:``, `counts --tenant`):
    :class:`InvalidArgument` for ``svc:`` alone (its events were stored under tenant ``svc:``, which
    no service tenant lists or erases) and for what the events' column cannot hold."""
    if isinstance(space, str) and space.startswith("svc:") and space_owner(space) is None:
        raise InvalidArgument(f"tenant {space!r} names no service tenant: a service tenant's gallery "
                              "space is svc:<id> (svc:acme), a CLI tenant a plain name (default)")
    tenant = events_tenant(space) if isinstance(space, str) else space
    if not isinstance(tenant, str) or not 0 < len(tenant) <= 64 or not tenant.strip():
        raise InvalidArgument(f"tenant is 1 to 64 characters (the events' column; a service tenant's "
                              f"svc:<id>: its id), not {str(space)[:40]!r}")
    return tenant


def _line(raw: object, number: int, where: str) -> LineSpec:
    if isinstance(raw, LineSpec):  # made by the caller (a store's door line)
        return raw
    if isinstance(raw, str):
        return LineSpec.parse(raw, f"line{number}")
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: line {number}: 'x1,y1,x2,y2' or a mapping with start and end, "
                           f"not {str(raw)[:60]!r}")
    line = _settings_of(LineSpec, raw, f"{where}: line {number}")  # a misspelt key ('expectd') was ignored
    try:
        return LineSpec(**{**line, "start": tuple(line["start"]), "end": tuple(line["end"]),
                           "name": line.get("name", f"line{number}")})
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: line {number}: {exc}") from None


def _zone(raw: object, number: int, where: str) -> ZoneSpec:
    zone = _settings_of(ZoneSpec, raw, f"{where}: zone {number}")
    classes = zone.get("classes")
    if isinstance(classes, str):
        raise InvalidInput(f"{where}: zone {number}: classes is a list of classes ([person]), not {classes!r}")
    try:
        return ZoneSpec(**{**zone, "polygon": [tuple(p) for p in zone["polygon"]],
                           "classes": tuple(classes) if classes is not None else None})
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: zone {number}: {exc}") from None


def _path_setting(raw: dict[str, Any], key: str, where: str, *, error: type[InvalidInput] = InvalidInput) -> None:
    """``raw[key]`` as a Path when given (a number there said "expected str, bytes or os.PathLike"), else ``error``."""
    value = raw.get(key)
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise error(f"{where}: {key} is a path, not {str(value)[:60]!r}")
    raw[key] = Path(value)


def _settings_of(kind: type, raw: object, where: str, *, besides: tuple[str, ...] = (),
                 error: type[InvalidInput] = InvalidInput) -> dict[str, Any]:
    """``raw`` as the settings of the dataclass ``kind`` (``besides``: its fields read elsewhere): a
    mapping of known names, else ``error`` (:class:`InvalidInput`) saying ``where`` and which names it takes."""
    if not isinstance(raw, dict):
        raise error(f"{where}: a mapping of settings, not {type(raw).__name__} {str(raw)[:60]!r}")
    known = {f.name for f in fields(kind)} - set(besides)
    unknown = set(raw) - known
    if unknown:
        raise error(f"{where}: unknown settings {sorted(map(str, unknown))} (known: {', '.join(sorted(known))})")
    needed = [f.name for f in fields(kind) if f.name in known and f.default is MISSING
              and f.default_factory is MISSING and f.name not in raw]
    if needed:
        raise error(f"{where}: missing settings {needed}")
    return dict(raw)


def _camera(raw: dict[str, Any], number: int, path: Path) -> CameraConfig:
    """The ``number``-th camera of the file ``path``, its mistakes said of ``camera <name>`` as the
    camera's own checks say them (a calibration's were of ``camera 1`` beside ``camera door``'s
    others); of ``camera <number>`` when it has no name (or one that is no camera name)."""
    name = raw.get("name")
    try:
        named = bool(check_camera_name(name))
    except InvalidArgument:
        named = False
    return camera_from_settings({"name": f"camera{number}", **raw}, f"{path}: camera {name if named else number}")


def camera_from_settings(raw: object, where: str, **given: Any) -> CameraConfig:
    """The :class:`CameraConfig` of a camera's settings as a file gives them (``raw``: lines as
    'x1,y1,x2,y2' or mappings, zones and the calibration as mappings, ``start_time`` as ISO 8601
    text, paths as text), as a cams.yaml's camera or a store camera's ``video:`` (which skipped
    these conversions: a zone there was an AttributeError at the start of the run). ``given``: the
    settings the caller sets itself (a store camera's source, name...), which ``raw`` may not name.
    A value that is not one, or a name it does not take, is :class:`InvalidInput` saying ``where``."""
    raw = {**_settings_of(CameraConfig, raw, where, besides=tuple(given)), **given}
    try:
        return _converted_camera(raw, where)
    except (TypeError, KeyError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        # a zone, line or calibration with a missing, unknown or mistyped key
        raise InvalidInput(f"{where}: {exc}") from exc


def _converted_camera(raw: dict[str, Any], where: str) -> CameraConfig:
    source = raw["source"]  # a list was looked for as the file "['a']"
    if isinstance(source, bool) or not isinstance(source, (str, int)) or (isinstance(source, int) and source < 0):
        raise InvalidInput(f"{where}: source is a video file, an rtsp:// or http:// URL or a webcam index (0, 1, "
                           f"...), not {str(source)[:60]!r}")
    raw["source"] = str(source)
    for key in ("lines", "zones", "classes"):
        if key in raw and not isinstance(raw[key], list):  # 'classes: car' was the classes c, a and r
            raise InvalidInput(f"{where}: {key} is a list ([...]), not {str(raw[key])[:60]!r}")
    raw["lines"] = [_line(line, i, where) for i, line in enumerate(raw.get("lines", []), 1)]
    raw["zones"] = [_zone(z, i, where) for i, z in enumerate(raw.get("zones", []), 1)]
    if raw.get("calibration") is not None:
        plane = _settings_of(GroundPlane, raw["calibration"], f"{where}: calibration")
        try:
            image, world = (list(map(tuple, plane[k])) if isinstance(plane[k], list) else plane[k]
                            for k in ("image", "world"))
            raw["calibration"] = GroundPlane(image, world, plane.get("speed_window", 1.0))
        except (InvalidArgument, TypeError) as exc:  # a point that is no list of two numbers
            raise InvalidInput(f"{where}: {exc}") from None
    raw["recognition"] = checked_settings(RecognitionConfig, raw.get("recognition") or {}, f"{where}: recognition")
    if isinstance(raw.get("start_time"), str):
        try:
            raw["start_time"] = datetime.fromisoformat(raw["start_time"])
        except ValueError:
            raise InvalidInput(f"{where}: start_time is an ISO 8601 date and time (2026-12-04T08:00:00+00:00), "
                               f"not {raw['start_time'][:40]!r}") from None
    for key in ("output", "snapshots"):
        _path_setting(raw, key, where)
    camera = CameraConfig(**raw)
    _check_detects(camera, where)
    return camera


def _check_detects(camera: CameraConfig, where: str) -> None:
    """A camera read from a file detects something: faces (the face detector) or persons (the COCO
    detector, which also finds the road users of ``classes``). With both off it analysed every frame
    and emitted no event, exit 0; with persons off a vehicle class was never looked for. (A camera made
    in code may turn both off: its pipeline then only reads the video, or writes its output.)"""
    vehicles = [name for name in camera.classes if name != "person"]
    if not camera.faces and not camera.persons:
        raise InvalidInput(f"{where}: faces and persons are both off: the camera detects nothing; turn on faces "
                           "(the face detector) or persons (the COCO detector: persons and the road users of "
                           "classes)")
    if not camera.persons and vehicles:
        raise InvalidInput(f"{where}: classes {', '.join(vehicles)[:100]} are found by the COCO detector, which "
                           "persons: false turns off; turn persons on to track them")


def load_config(path: Path) -> WatchConfig:
    """Read a ``cams.yaml`` file; one that cannot be read, is not YAML or not a valid
    configuration is :class:`InvalidArgument` saying where: one code (``validation_error``) for
    every mistake in the file, where a mistyped key was ``bad_request`` and a value out of range
    ``validation_error``; a file that is not there is :class:`FileMissing` (``file_not_found``, as
    every command's)."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise FileMissing(f"{path}: no such configuration file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: cannot be read as a YAML file ({exc})") from exc
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path}: not valid YAML: {yaml_problem(exc)}") from exc
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{path}: a cams.yaml is a mapping with 'cameras: [...]', not a {type(raw).__name__}")
    try:
        listed = raw.pop("cameras", []) or []
        if not isinstance(listed, list) or not all(isinstance(c, dict) for c in listed):
            raise TypeError("'cameras' is a list of cameras, each a mapping with a 'source'")
        cameras = [_camera(c, i, path) for i, c in enumerate(listed, 1)]
    except InvalidInput as exc:  # said by a camera, line or zone: the file is named once
        said = str(exc)
        raise InvalidArgument(said if said.startswith(str(path)) else f"{path}: {said}") from None
    except (TypeError, KeyError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        # a zone, line or calibration with a missing, unknown or mistyped key
        raise InvalidArgument(f"{path}: {exc}") from exc
    if not cameras:
        raise InvalidArgument(f"{path}: no cameras")
    raw = _settings_of(WatchConfig, raw, str(path), besides=("cameras", "file"), error=InvalidArgument)
    webhook = raw.pop("webhook", None)  # an empty one ('webhook: {}') is missing its url, not no webhook
    webhook = None if webhook is None else _settings_of(WebhookConfig, webhook, f"{path}: webhook",
                                                        error=InvalidArgument)
    mqtt = raw.pop("mqtt", None)
    mqtt = None if mqtt is None else _settings_of(MqttConfig, mqtt, f"{path}: mqtt", error=InvalidArgument)
    if webhook is not None and not str(webhook.get("url", "")).startswith(("http://", "https://")):
        raise InvalidArgument(f"{path}: webhook: 'url' is an http:// or https:// address, not {webhook.get('url')!r}")
    if webhook is not None and isinstance(webhook.get("url"), str):
        problem = url_problem(webhook["url"])
        if problem is not None:  # the webhook thread died on its first event, or posted to no host
            raise InvalidArgument(f"{path}: webhook: 'url' {webhook['url'][:80]!r}: {problem}")
    _path_setting(raw, "events", str(path), error=InvalidArgument)
    for key in ("database", "collection", "gallery", "detector"):
        if raw.get(key) is not None and not isinstance(raw[key], str):  # database: 5 was a traceback
            raise InvalidArgument(f"{path}: {key} is text, not {str(raw[key])[:60]!r}")
    webhook = None if webhook is None else checked_settings(WebhookConfig, webhook, f"{path}: webhook",
                                                            error=InvalidArgument)
    mqtt = None if mqtt is None else checked_settings(MqttConfig, mqtt, f"{path}: mqtt", error=InvalidArgument)
    try:
        return WatchConfig(cameras, file=Path(path), webhook=webhook, mqtt=mqtt, **raw)
    except (TypeError, InvalidArgument) as exc:  # a setting of the wrong kind
        raise InvalidArgument(f"{path}: {exc}") from exc


def url_problem(url: str) -> str | None:
    """Why ``url`` (http:// or https://) names no host to post to, or None when it names one: no host
    (``http://``), a port out of 1 to 65535, or a URL urllib cannot split (``http://[::1``)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:  # an unclosed [ of an IPv6 address, a port that is not a number or out of range
        return f"not a valid URL ({exc})"
    if not parts.hostname:
        return "names no host"
    if any(c.isspace() or not c.isprintable() for c in url):  # http.client refused it at the first event
        return "holds a space or a control character"
    if port == 0:
        return "port 0 is no port (1 to 65535)"
    return None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem
