"""The video layer: sources (files, RTSP/HTTP streams, webcams), ByteTrack tracks of faces and
persons, identities voted over a track, line and zone counts, and events delivered to sinks
(JSONL, database, webhooks, MQTT). ``run_watch`` is the use case the `watch` command runs.
Traffic and crowds: vehicles by class, speeds, dwell, queues, densities, wrong-way, and the
per-minute counts that ``camera_counts`` reads and ``plot_counts``/``plot_heatmap`` draw."""

from faceatlas.video.analytics import GroundPlane, SpeedMeter, ViewTransformer
from faceatlas.video.annotate import FrameAnnotator, VideoWriter, blur_faces, blur_plates, check_video_path
from faceatlas.video.config import (
    CameraConfig,
    MqttConfig,
    RecognitionConfig,
    WatchConfig,
    WebhookConfig,
    camera_from_settings,
    camera_name,
    check_outputs,
    check_run_outputs,
    checked_settings,
    load_config,
    prepare_outputs,
    same_file,
)
from faceatlas.video.events import EVENT_TYPES, Event
from faceatlas.video.identity import EmbeddingMatcher, GalleryMatcher, IdentityMatch, IdentityMatcher, IdentityVote
from faceatlas.video.pipeline import PipelineStats, VideoPipeline, interrupts_held, run_cameras
from faceatlas.video.plots import (
    camera_counts,
    check_measure,
    measure_note,
    minute_series,
    occupancy,
    plot_counts,
    plot_heatmap,
)
from faceatlas.video.sinks import (
    EVENTS_STDOUT,
    DatabaseSink,
    EventBus,
    EventSink,
    JsonlSink,
    MqttSink,
    events_from_jsonl,
)
from faceatlas.video.sources import Frame, SourceStats, VideoSource, is_live
from faceatlas.video.store import (
    COUNT_PAGE_MINUTES,
    CountPage,
    CountRow,
    EventRow,
    MinuteCounts,
    VideoBase,
    erase_tenant_events,
    event_snapshot,
    list_counts,
    list_events,
    open_events_db,
    utc_time,
)
from faceatlas.video.tracks import Track
from faceatlas.video.watch import WatchReport, build_sinks, run_watch
from faceatlas.video.webhook import WebhookSink, verify_signature
from faceatlas.video.zones import LineCounter, LineSpec, ZoneCounter, ZoneSpec

__all__ = [
    "COUNT_PAGE_MINUTES",
    "EVENT_TYPES",
    "EVENTS_STDOUT",
    "CameraConfig",
    "CountPage",
    "CountRow",
    "DatabaseSink",
    "EmbeddingMatcher",
    "Event",
    "EventBus",
    "EventRow",
    "EventSink",
    "Frame",
    "FrameAnnotator",
    "GalleryMatcher",
    "GroundPlane",
    "IdentityMatch",
    "IdentityMatcher",
    "IdentityVote",
    "JsonlSink",
    "LineCounter",
    "LineSpec",
    "MinuteCounts",
    "MqttConfig",
    "MqttSink",
    "PipelineStats",
    "RecognitionConfig",
    "SourceStats",
    "SpeedMeter",
    "Track",
    "VideoBase",
    "VideoPipeline",
    "VideoSource",
    "VideoWriter",
    "check_video_path",
    "ViewTransformer",
    "WatchConfig",
    "WatchReport",
    "WebhookConfig",
    "WebhookSink",
    "ZoneCounter",
    "ZoneSpec",
    "blur_faces",
    "blur_plates",
    "build_sinks",
    "erase_tenant_events",
    "event_snapshot",
    "camera_counts",
    "camera_from_settings",
    "camera_name",
    "check_measure",
    "checked_settings",
    "measure_note",
    "events_from_jsonl",
    "is_live",
    "list_counts",
    "list_events",
    "load_config",
    "minute_series",
    "occupancy",
    "open_events_db",
    "plot_counts",
    "plot_heatmap",
    "interrupts_held",
    "run_cameras",
    "run_watch",
    "check_outputs",
    "check_run_outputs",
    "prepare_outputs",
    "same_file",
    "utc_time",
    "verify_signature",
]
