"""The `watch` use case: build the sinks a :class:`WatchConfig` names, the engine, the optional
gallery matcher and one pipeline per camera, run them until the sources end or Ctrl-C, and report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from faceatlas.db import check_database_url
from faceatlas.engine import IMAGE_SUFFIXES, FaceAnalyzer, get_pack, must_exist, not_regular
from faceatlas.engine.persons import ObjectDetector
from faceatlas.errors import CamerasFailed, FaceAtlasError, FileMissing, InvalidInput
from faceatlas.gallery import Gallery
from faceatlas.settings import RETENTION_SWEEP_SECONDS
from faceatlas.video.config import WatchConfig, check_run_outputs, events_tenant, prepare_outputs, url_problem
from faceatlas.video.identity import GalleryMatcher, IdentityMatcher
from faceatlas.video.pipeline import PipelineStats, VideoPipeline, interrupts_held, run_cameras
from faceatlas.video.retention import EventRetention
from faceatlas.video.sinks import DatabaseSink, EventBus, EventSink, JsonlSink, MqttSink
from faceatlas.video.sources import check_video_file, check_webcam_index, is_live
from faceatlas.video.webhook import WebhookSink


@dataclass
class WatchReport:
    """Per-camera statistics (of the cameras that ran to their end), how many events of each type
    were emitted, how many events each sink that counts them could not deliver (``{"MqttSink": 3}``),
    and the cameras that failed, each with its error (their events until then were written);
    ``expired``: the stored events (of the events database, any run's) deleted as older than the
    retention (``FACEATLAS_EVENT_RETENTION_DAYS``), with their snapshots."""

    cameras: list[PipelineStats]
    events: dict[str, int] = field(default_factory=dict)
    undelivered: dict[str, int] = field(default_factory=dict)
    failed: dict[str, FaceAtlasError] = field(default_factory=dict)
    reader_gone: bool = False  # the reader of the events on standard output went away: the run stopped
    expired: int = 0
    dead_letters: dict[str, tuple[int, str]] = field(default_factory=dict)  # sink: (events written, file)

    @property
    def exit_status(self) -> int:
        """The status `watch` exits with (as `retail run`, ``StoreRunReport.exit_status``): 130 when a
        file's camera was stopped before its end; when cameras failed, 2 if every one did, else 1
        (the others' results stand, as a command over many inputs exits); 1 when a sink could not
        deliver some events (a consumer missed some), else 0. A caller of :func:`run_watch` reads it
        (or ``failed``): a camera's failure is in the report, not raised. 141 (128 + SIGPIPE) when
        the reader of ``--events -`` went away and the run stopped for it, as a Unix tool's."""
        if self.reader_gone:
            return 141
        if any(stats.interrupted for stats in self.cameras):
            return 130
        if self.failed:
            return 1 if self.cameras else 2
        return 1 if any(self.undelivered.values()) else 0


# the stream schemes whose URL names the server to connect to (udp://, tcp:// and srt:// without a host
# may listen: 'udp://@:1234')
SERVER_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")


def stream_problem(source: str | int | Path) -> str | None:
    """Why a stream URL ``source`` can never be opened (it names no host, port 0, a URL that does not
    split: :func:`url_problem`, as for a webhook), or None (files, webcams, listening streams)."""
    text = str(source)
    return url_problem(text) if text.lower().startswith(SERVER_SCHEMES) else None


def check_camera_source(source: str | int | Path, *, of: str | None = None) -> None:
    """:class:`InvalidInput` unless the video source ``source`` can be run, checked before anything is
    written or made (an events file, a store, its pack): not empty, no webcam index beyond any camera,
    no stream URL that can never be opened (:func:`stream_problem`: 'rtsp://' was retried for ever, as
    a camera that is down), and a file that is there, no folder, no photo and opens as a video (the
    container only: a text file named ``.mp4`` is refused). ``of``: the camera's name, said first
    (``camera 'door': ...``) where a run has several."""
    said = "" if of is None else f"camera {of!r}: "
    text = str(source)
    if not text.strip():  # Path('') is the working folder: it was "'' is a folder"
        raise InvalidInput(f"{said}the video source is empty: give a video file, a stream URL or a webcam index")
    try:
        check_webcam_index(source)  # no such camera: before any camera's thread starts
    except InvalidInput as exc:
        raise InvalidInput(f"{said}{exc}") from None
    problem = stream_problem(source)
    if problem is not None:
        raise InvalidInput(f"{said}video source {text[:120]!r}: {problem}")
    if is_live(source):
        return
    path = Path(text)
    if path.is_dir():
        raise InvalidInput(f"{said}video source {text!r} is a folder: give a video file in it, or one "
                           "camera per file in a --config cams.yaml")
    try:
        must_exist(path, "video file")
    except FileMissing as exc:  # file_not_found, as every command's missing file
        raise FileMissing(f"{said}video source {text!r} not found") from exc
    why = not_regular(path, "a video file")
    if why is not None:  # a FIFO, a device, a link loop: it is there, but no file to read (never opened)
        raise InvalidInput(f"{said}video source {text!r}: {why}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES and suffix != ".gif":  # ran as a 1-frame video: 0 events (a GIF may be one)
        raise InvalidInput(f"{said}video source {text!r} is a photo: `faceatlas detect` or `faceatlas "
                           "gallery identify` read photos; watch reads videos, streams and webcams")
    try:  # a file that is no video fails here, before the sinks create the events file
        check_video_file(path)
    except OSError as exc:
        raise InvalidInput(f"{said}cannot read video source: {exc}") from exc


def build_sinks(config: WatchConfig, *, on_reader_gone: Callable[[], None] | None = None) -> list[EventSink]:
    """The event sinks ``config`` names: JSONL file (``on_reader_gone``: see :class:`JsonlSink`),
    database table (its rows under :func:`events_tenant`), webhooks, MQTT."""
    sinks: list[EventSink] = []
    if config.events:
        sinks.append(JsonlSink(config.events, on_reader_gone=on_reader_gone))
    if config.database:
        sinks.append(DatabaseSink(config.database, tenant=events_tenant(config.tenant)))
    if config.webhook:
        sinks.append(WebhookSink(config.webhook))
    if config.mqtt:
        sinks.append(MqttSink(config.mqtt))
    return sinks


def run_watch(config: WatchConfig, *, pack: str | None = None, persons: bool = True,
              on_frame: Callable[[str, int, int | None], None] | None = None,
              retention_days: float | None = None, sweep_seconds: float = RETENTION_SWEEP_SECONDS) -> WatchReport:
    """Run every camera of ``config`` (faces, persons when ``persons``, recognition against
    ``config.collection`` when set); events are flushed to the sinks whatever ends the run.
    ``pack`` None: the collection's pack when recognising, else the default (``FACEATLAS_PACK`` or
    the engine's default), as for every other use case. ``retention_days`` (the door passes
    ``FACEATLAS_EVENT_RETENTION_DAYS``; None keeps every event): the events of ``config.database``
    older than that, with their snapshot files, are deleted at the start and every ``sweep_seconds``
    while the run goes on (:class:`EventRetention`), as the server's sweep does; ``expired`` in the report."""
    if pack is not None or not config.collection:
        get_pack(pack)  # fail before loading models or writing anything: an unknown pack, a missing file
    for camera in config.cameras:
        check_camera_source(camera.source, of=camera.name if len(config.cameras) > 1 else None)
    blind = [camera.name for camera in config.cameras if not camera.faces and not (persons and camera.persons)]
    if blind:  # `watch --no-persons` over cameras whose faces are off ran them to the end and counted nothing
        raise InvalidInput(f"camera{'s' if len(blind) > 1 else ''} {', '.join(blind)}: faces are off and persons "
                           "are turned off for this run (--no-persons): nothing would be detected; turn faces on "
                           "in its config, or run without --no-persons")
    if config.database:  # an unknown scheme or a driver not installed: before the models load
        check_database_url(config.database)
    # the events file may have been given after the settings were made (`watch --events`)
    check_run_outputs(config.cameras, events=config.events, database=config.database, config=config.file)
    # read, never made: a mistyped gallery path was created (an empty database) before the collection
    # was not found in it; a missing SQLite file is NotFound ("no gallery database at ..."), before any output
    gallery = Gallery.open(config.gallery, tenant=config.tenant, create=False) if config.collection else None
    try:
        if gallery is not None and config.collection:
            collection = gallery.get_collection(config.collection)  # NotFound for an unknown collection
            pack = pack or collection.pack_name
        prepare_outputs(config.cameras)
        return _run(config, gallery, pack=pack, persons=persons, on_frame=on_frame,
                    retention=EventRetention(config.database, retention_days, sweep_seconds)
                    if config.database and retention_days is not None else None)
    finally:
        if gallery is not None:
            gallery.close()


def _run(config: WatchConfig, gallery: Gallery | None, *, pack: str | None, persons: bool,
         on_frame: Callable[[str, int, int | None], None] | None = None,
         retention: EventRetention | None = None) -> WatchReport:
    with_persons = persons and any(c.persons for c in config.cameras)
    # faces and persons are detected side by side (two threads): one ONNX thread each fills the
    # two cores; two each would oversubscribe them (measured 36 vs 19 frames/s at stride 2)
    analyzer = FaceAnalyzer(pack, threads=1 if with_persons else None)
    # one detector for every camera: the union of their classes (and of the labels they alias)
    wanted = sorted({n for c in config.cameras if c.persons for n in [*c.classes, *c.aliases]})
    person_detector = ObjectDetector(threads=1, classes=wanted, name=config.detector) if with_persons else None
    pipelines: list[VideoPipeline] = []

    def stop_every_camera() -> None:  # the events' reader went away: nobody reads what the run makes
        for pipeline in pipelines:
            pipeline.stop()

    bus = EventBus(build_sinks(config, on_reader_gone=stop_every_camera))
    matcher: IdentityMatcher | None = GalleryMatcher(gallery, config.collection) if gallery and config.collection \
        else None
    pipelines.extend(VideoPipeline(camera, analyzer, bus, persons=person_detector, matcher=matcher,
                                   on_frame=on_frame) for camera in config.cameras)
    failed: dict[str, FaceAtlasError] = {}
    if retention is not None:  # after the sinks made the events table; a thread of its own (see EventRetention)
        retention.start()
    try:
        results = run_cameras(pipelines)
    except CamerasFailed as exc:  # the others ran: their stats are reported beside each failure
        results, failed = exc.stats, exc.failures
    finally:
        with interrupts_held("the sinks deliver their events"):
            bus.close()
            expired = retention.close() if retention is not None else 0
    gone = any(isinstance(sink, JsonlSink) and sink.reader_gone for sink in bus.sinks)
    return WatchReport(results, dict(sorted(bus.counts.items())), bus.undelivered(), failed, reader_gone=gone,
                       expired=expired, dead_letters=bus.dead_letters())
