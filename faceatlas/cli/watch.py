"""`faceatlas watch`: run the video pipeline on one source or on the cameras of a YAML file."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from faceatlas.engine import FaceAnalyzer
from faceatlas.engine.persons import PersonDetector
from faceatlas.video.config import CameraConfig, RecognitionConfig, WatchConfig, load_config
from faceatlas.video.identity import GalleryMatcher, IdentityMatcher
from faceatlas.video.pipeline import VideoPipeline, run_cameras
from faceatlas.video.sinks import DatabaseSink, EventBus, EventSink, JsonlSink, MqttSink
from faceatlas.video.webhook import WebhookSink
from faceatlas.video.zones import LineSpec

err = Console(stderr=True)


def _sinks(config: WatchConfig) -> list[EventSink]:
    sinks: list[EventSink] = []
    if config.events:
        sinks.append(JsonlSink(config.events))
    if config.database:
        sinks.append(DatabaseSink(config.database, tenant=config.tenant))
    if config.webhook:
        sinks.append(WebhookSink(config.webhook))
    if config.mqtt:
        sinks.append(MqttSink(config.mqtt))
    return sinks


def watch(
    source: Annotated[str | None, typer.Argument(help="video file, rtsp:// or http:// URL, or webcam index")] = None,
    collection: Annotated[str | None, typer.Option(help="gallery collection to recognise against")] = None,
    config: Annotated[Path | None, typer.Option(help="cams.yaml with several cameras and the sinks")] = None,
    stride: Annotated[int, typer.Option(help="detect on every Nth frame")] = 2,
    line: Annotated[list[str] | None, typer.Option(help="counting line x1,y1,x2,y2 (repeatable)")] = None,
    events: Annotated[Path | None, typer.Option(help="write events as JSON lines here")] = None,
    output: Annotated[Path | None, typer.Option(help="write an annotated video here")] = None,
    pack: Annotated[str | None, typer.Option("--pack", "-p", help="model pack")] = "scrfd-mbf",
    gallery: Annotated[str | None, typer.Option(help="gallery database URL")] = None,
    persons: Annotated[bool, typer.Option(help="detect and count persons too")] = True,
) -> None:
    """Watch video sources: track faces and persons, recognise, count, and emit events."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config is not None:
        settings = load_config(config)
    elif source is not None:
        lines = [LineSpec.parse(text, f"line{i}") for i, text in enumerate(line or [], 1)]
        camera = CameraConfig(source=source, name=Path(source).stem or source, stride=stride, lines=lines,
                              output=output, recognition=RecognitionConfig())
        settings = WatchConfig([camera], collection=collection, gallery=gallery, events=events)
    else:
        raise typer.BadParameter("give a SOURCE or --config")
    settings.collection = collection or settings.collection
    settings.events = events or settings.events
    with_persons = persons and any(c.persons for c in settings.cameras)
    # faces and persons are detected side by side (two threads): one ONNX thread each fills the
    # two cores; two each would oversubscribe them (measured 36 vs 19 frames/s at stride 2)
    threads = 1 if with_persons else None
    analyzer = FaceAnalyzer(pack, threads=threads)
    person_detector = PersonDetector(threads=1) if with_persons else None
    bus = EventBus(_sinks(settings))
    gallery_handle = None
    matcher: IdentityMatcher | None = None
    if settings.collection:
        from faceatlas.gallery import Gallery

        gallery_handle = Gallery.open(settings.gallery, tenant=settings.tenant)
        matcher = GalleryMatcher(gallery_handle, settings.collection)
    pipelines = [VideoPipeline(camera, analyzer, bus, persons=person_detector, matcher=matcher)
                 for camera in settings.cameras]
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C: events are flushed
    try:
        results = run_cameras(pipelines)
    finally:
        bus.close()
        if gallery_handle is not None:
            gallery_handle.close()
    table = Table(title="faceatlas watch")
    for column in ("camera", "frames", "analysed", "fps", "dropped", "corrupt", "reconnects", "lines"):
        table.add_column(column)
    for stats in results:
        table.add_row(stats.camera, str(stats.frames), str(stats.analysed), f"{stats.fps:.1f}",
                      str(stats.source.dropped), str(stats.source.corrupt), str(stats.source.reconnects),
                      str(stats.line_counts or ""))
    err.print(table)
    err.print({kind: count for kind, count in sorted(bus.counts.items())})
