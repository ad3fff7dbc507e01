"""Video pipeline throughput at 720p: frames/s and real-time factor for detection stride 1/2/3,
against the naive loop (detect and embed every face on every frame), in the same run.

    python bench/video_throughput.py [--video PATH] [--frames 150] [--no-persons]

Uses ../shared/data/videos/people_walking_vtest.avi (1280x720) and the scrfd-mbf pack.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

SHARED = Path(os.environ.get("FACEATLAS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
os.environ.setdefault("FACEATLAS_MODEL_DIR", str(SHARED / "models"))

from faceatlas.engine import FaceAnalyzer  # noqa: E402
from faceatlas.engine.persons import PersonDetector  # noqa: E402
from faceatlas.video.config import CameraConfig  # noqa: E402
from faceatlas.video.identity import EmbeddingMatcher  # noqa: E402
from faceatlas.video.pipeline import VideoPipeline  # noqa: E402
from faceatlas.video.sinks import EventBus  # noqa: E402
from faceatlas.video.sources import VideoSource  # noqa: E402
from faceatlas.video.zones import LineSpec  # noqa: E402


def _pipeline_fps(video: Path, frames: int, stride: int, analyzer: FaceAnalyzer, persons: PersonDetector | None,
                  matcher: EmbeddingMatcher) -> tuple[float, float]:
    camera = CameraConfig(source=str(video), stride=stride, persons=persons is not None,
                          lines=[LineSpec.parse("0,360,1280,360")])
    pipeline = VideoPipeline(camera, analyzer, EventBus(), persons=persons, matcher=matcher)
    source = VideoSource(video)
    started = time.perf_counter()
    for frame in source:
        pipeline.process(frame, source.fps)
        if frame.index + 1 >= frames:
            break
    pipeline.finish()
    return frames / (time.perf_counter() - started), source.fps


def _naive_fps(video: Path, frames: int, analyzer: FaceAnalyzer) -> float:
    source = VideoSource(video)
    started = time.perf_counter()
    for frame in source:
        analyzer.analyze(frame.image)  # detect + align + embed every face, every frame
        if frame.index + 1 >= frames:
            break
    return frames / (time.perf_counter() - started)


def main(
    video: Annotated[Path, typer.Option(help="a 720p video")] = SHARED / "data/videos/people_walking_vtest.avi",
    frames: Annotated[int, typer.Option(help="frames per measurement")] = 150,
    persons: Annotated[bool, typer.Option(help="run the person detector too")] = True,
) -> None:
    analyzer = FaceAnalyzer("scrfd-mbf", announce_license=False)
    # the pipeline runs faces and persons side by side, so it gets one ONNX thread per model (as
    # `faceatlas watch` does); the naive loop keeps all cores for its one model
    pipeline_analyzer = FaceAnalyzer("scrfd-mbf", threads=1, announce_license=False) if persons else analyzer
    detector = PersonDetector(threads=1) if persons else None
    matcher = EmbeddingMatcher(threshold=0.4)
    matcher.add_images(analyzer, "lin", [SHARED / "data/face_recognition_examples/examples/lin-manuel-miranda.png"])
    _naive_fps(video, 10, analyzer)  # warm-up
    table = Table(title=f"{video.name}, {frames} frames, {os.cpu_count()} CPUs, persons {'on' if persons else 'off'}")
    for column in ("loop", "frames/s", "real-time factor"):
        table.add_column(column)
    naive = _naive_fps(video, frames, analyzer)
    source_fps = 0.0
    rows = []
    for stride in (1, 2, 3):
        fps, source_fps = _pipeline_fps(video, frames, stride, pipeline_analyzer, detector, matcher)
        rows.append((f"pipeline stride {stride}", fps))
    rows.insert(0, ("naive (detect + embed every face, every frame)", naive))
    for name, fps in rows:
        table.add_row(name, f"{fps:.1f}", f"{fps / source_fps:.2f}x" if source_fps else "-")
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
