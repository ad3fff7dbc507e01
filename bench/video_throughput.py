"""Video pipeline throughput at 720p: frames/s and real-time factor for detection stride 1/2/3,
against the naive loop (detect and embed every face on every frame), in the same run; then faces
plus every road class (person, car, bus, truck, motorcycle, bicycle, with the city analytics: a
line, a zone, a ground-plane calibration for speeds), one camera and 4 cameras at once in one
process (threads sharing the models, as `faceatlas watch` runs them), and how many cameras one
machine carries at 10 frames/s each (the 4 cameras' total frames/s / 10).

The machine this was written on is shared and its load varies tenfold, so beside the wall-clock
frames/s each row gives the CPU time per frame (process time, all threads): the frames/s an idle
machine would give is about cores x 1000 / (CPU ms per frame), when the work spreads over the cores.

    python bench/video_throughput.py [--video PATH] [--frames 150] [--no-persons] [--cameras 4]

Uses ../shared/data/videos/people_walking_vtest.avi (1280x720) and the scrfd-mbf pack (`--pack`).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

SHARED = Path(os.environ.get("FACEATLAS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
os.environ.setdefault("FACEATLAS_MODEL_DIR", str(SHARED / "models"))

from faceatlas.engine import FaceAnalyzer  # noqa: E402
from faceatlas.engine.persons import ROAD_CLASSES, ObjectDetector, PersonDetector  # noqa: E402
from faceatlas.video.analytics import GroundPlane  # noqa: E402
from faceatlas.video.config import CameraConfig  # noqa: E402
from faceatlas.video.identity import EmbeddingMatcher  # noqa: E402
from faceatlas.video.pipeline import VideoPipeline  # noqa: E402
from faceatlas.video.sinks import EventBus  # noqa: E402
from faceatlas.video.sources import VideoSource  # noqa: E402
from faceatlas.video.zones import LineSpec, ZoneSpec  # noqa: E402

HALL = [(0, 0), (1280, 0), (1280, 720), (0, 720)]


def _pipeline_fps(video: Path, frames: int, stride: int, analyzer: FaceAnalyzer, persons: PersonDetector | None,
                  matcher: EmbeddingMatcher) -> tuple[float, float, float]:
    camera = CameraConfig(source=str(video), stride=stride, persons=persons is not None,
                          lines=[LineSpec.parse("0,360,1280,360")])
    pipeline = VideoPipeline(camera, analyzer, EventBus(), persons=persons, matcher=matcher)
    source = VideoSource(video)
    started, cpu = time.perf_counter(), time.process_time()
    for frame in source:
        pipeline.process(frame, source.fps)
        if frame.index + 1 >= frames:
            break
    pipeline.finish()
    return frames / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / frames, source.fps


def _city_fps(video: Path, frames: int, stride: int, analyzer: FaceAnalyzer, detector: ObjectDetector,
              cameras: int) -> tuple[float, float]:
    """Frames/s per camera with ``cameras`` pipelines (faces + every road class + analytics) at once."""
    specs = [CameraConfig(source=str(video), name=f"cam{i}", stride=stride, classes=list(ROAD_CLASSES),
                          lines=[LineSpec.parse("0,360,1280,360")], calibration=GroundPlane(HALL, [(0, 0), (20, 0),
                          (20, 12), (0, 12)]), zones=[ZoneSpec("hall", HALL, max_dwell=5.0, queue_after=2.0)])
             for i in range(cameras)]
    pipelines = [VideoPipeline(spec, analyzer, EventBus(), persons=detector) for spec in specs]

    def run(pipeline: VideoPipeline) -> None:
        source = VideoSource(video)
        for frame in source:
            pipeline.process(frame, source.fps)
            if frame.index + 1 >= frames:
                break
        source.close()
        pipeline.finish()

    threads = [threading.Thread(target=run, args=(p,)) for p in pipelines]
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return frames / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / (frames * cameras)


def _naive_fps(video: Path, frames: int, analyzer: FaceAnalyzer) -> tuple[float, float]:
    source = VideoSource(video)
    started, cpu = time.perf_counter(), time.process_time()
    for frame in source:
        analyzer.analyze(frame.image)  # detect + align + embed every face, every frame
        if frame.index + 1 >= frames:
            break
    return frames / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / frames


def main(
    video: Annotated[Path, typer.Option(help="a 720p video")] = SHARED / "data/videos/people_walking_vtest.avi",
    frames: Annotated[int, typer.Option(help="frames per measurement")] = 150,
    persons: Annotated[bool, typer.Option(help="run the person detector too")] = True,
    cameras: Annotated[int, typer.Option(help="cameras at once for the city rows")] = 4,
    pack: Annotated[str, typer.Option(help="the face pack (FACEATLAS_PROVIDER picks ONNX Runtime or OpenVINO)")]
    = "scrfd-mbf",
) -> None:
    analyzer = FaceAnalyzer(pack, announce_license=False)
    # the pipeline runs faces and persons side by side, so it gets one ONNX thread per model (as
    # `faceatlas watch` does); the naive loop keeps all cores for its one model
    pipeline_analyzer = FaceAnalyzer(pack, threads=1, announce_license=False) if persons else analyzer
    detector = PersonDetector(threads=1) if persons else None
    matcher = EmbeddingMatcher(threshold=0.4)
    matcher.add_images(analyzer, "lin", [SHARED / "data/face_recognition_examples/examples/lin-manuel-miranda.png"])
    _naive_fps(video, 10, analyzer)  # warm-up
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    table = Table(title=f"{video.name}, {frames} frames, {os.cpu_count()} CPUs{load}, "
                        f"persons {'on' if persons else 'off'} (city: faces + person, car, bus, truck, "
                        "motorcycle, bicycle + line, zone, speeds)")
    cores = os.cpu_count() or 1
    for column in ("loop", "frames/s", "real-time factor", "CPU ms/frame", f"idle {cores} cores: frames/s"):
        table.add_column(column)
    naive = _naive_fps(video, frames, analyzer)
    source_fps = 0.0
    rows = [("naive (detect + embed every face, every frame)", *naive)]
    for stride in (1, 2, 3):
        fps, cpu_ms, source_fps = _pipeline_fps(video, frames, stride, pipeline_analyzer, detector, matcher)
        rows.append((f"pipeline stride {stride}", fps, cpu_ms))
    carried: tuple[float, float] | None = None
    if persons:
        road = ObjectDetector(threads=1, classes=ROAD_CLASSES)
        for count in (1, cameras):
            for stride in (1, 2, 3):
                fps, cpu_ms = _city_fps(video, frames, stride, pipeline_analyzer, road, count)
                rows.append((f"city stride {stride}, {count} camera(s), per camera", fps, cpu_ms))
                if count == cameras and stride == 2:
                    carried = (fps * count / 10, cores * 1000 / cpu_ms / 10)
    for name, fps, cpu_ms in rows:
        table.add_row(name, f"{fps:.1f}", f"{fps / source_fps:.2f}x" if source_fps else "-", f"{cpu_ms:.0f}",
                      f"{cores * 1000 / cpu_ms:.1f}")
    Console(width=160).print(table)
    if carried is not None:
        Console().print(f"cameras at 10 frames/s each (stride 2, faces + all classes, {cameras} at once): "
                        f"{carried[0]:.1f} measured now, ~{carried[1]:.1f} on the idle {cores} cores (from CPU time)")


if __name__ == "__main__":
    typer.run(main)
