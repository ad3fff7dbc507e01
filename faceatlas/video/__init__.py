"""The video layer: sources (files, RTSP/HTTP streams, webcams), ByteTrack tracks of faces and
persons, identities voted over a track, line and zone counts, and events delivered to sinks
(JSONL, database, webhooks, MQTT). ``run_watch`` is the use case the `watch` command runs."""

from faceatlas.video.annotate import FrameAnnotator, VideoWriter, blur_faces
from faceatlas.video.config import (
    CameraConfig,
    MqttConfig,
    RecognitionConfig,
    WatchConfig,
    WebhookConfig,
    load_config,
)
from faceatlas.video.events import EVENT_TYPES, Event
from faceatlas.video.identity import EmbeddingMatcher, GalleryMatcher, IdentityMatch, IdentityMatcher, IdentityVote
from faceatlas.video.pipeline import PipelineStats, VideoPipeline, run_cameras
from faceatlas.video.sinks import DatabaseSink, EventBus, EventSink, JsonlSink, MqttSink, events_from_jsonl
from faceatlas.video.sources import Frame, SourceStats, VideoSource, is_live
from faceatlas.video.store import EventRow, VideoBase, event_snapshot, list_events, open_events_db
from faceatlas.video.tracks import Track
from faceatlas.video.watch import WatchReport, build_sinks, run_watch
from faceatlas.video.webhook import WebhookSink, verify_signature
from faceatlas.video.zones import LineCounter, LineSpec, ZoneCounter, ZoneSpec

__all__ = [
    "EVENT_TYPES",
    "CameraConfig",
    "DatabaseSink",
    "EmbeddingMatcher",
    "Event",
    "EventBus",
    "EventRow",
    "EventSink",
    "Frame",
    "FrameAnnotator",
    "GalleryMatcher",
    "IdentityMatch",
    "IdentityMatcher",
    "IdentityVote",
    "JsonlSink",
    "LineCounter",
    "LineSpec",
    "MqttConfig",
    "MqttSink",
    "PipelineStats",
    "RecognitionConfig",
    "SourceStats",
    "Track",
    "VideoBase",
    "VideoPipeline",
    "VideoSource",
    "VideoWriter",
    "WatchConfig",
    "WatchReport",
    "WebhookConfig",
    "WebhookSink",
    "ZoneCounter",
    "ZoneSpec",
    "blur_faces",
    "build_sinks",
    "event_snapshot",
    "events_from_jsonl",
    "is_live",
    "list_events",
    "load_config",
    "open_events_db",
    "run_cameras",
    "run_watch",
    "verify_signature",
]
