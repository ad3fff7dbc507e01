"""The annotated video: written at the source's real frame rate."""

from __future__ import annotations

from pathlib import Path

import av
import cv2

from faceatlas.video.config import CameraConfig
from faceatlas.video.pipeline import VideoPipeline
from faceatlas.video.sinks import EventBus


def _real_fps(path: Path) -> tuple[int, float]:
    """Frames decoded and frames per second of video time (from the frames' own timestamps)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = sorted(float(frame.pts * stream.time_base) for frame in container.decode(stream))
    return len(times), (len(times) - 1) / (times[-1] - times[0])


def test_annotated_video_plays_at_the_source_frame_rate(pedestrians, memory, tmp_path):
    """The AVI's container claims 50 fps for 341 frames over 13.6 s (25 fps); the annotated copy
    used to be written at 50 fps and so played twice as fast."""
    frames, fps = _real_fps(pedestrians)
    assert frames == 341 and 24 < fps < 26
    output = tmp_path / "annotated.mp4"
    camera = CameraConfig(source=str(pedestrians), name="hall", faces=False, persons=False, output=output)
    stats = VideoPipeline(camera, None, EventBus([memory])).run()
    assert stats.frames == frames
    written = cv2.VideoCapture(str(output))
    written_fps, written_frames = written.get(cv2.CAP_PROP_FPS), written.get(cv2.CAP_PROP_FRAME_COUNT)
    written.release()
    assert written_frames == frames
    assert abs(written_fps / fps - 1) < 0.05, f"written at {written_fps:.2f} fps, the source runs at {fps:.2f}"


def test_frames_of_another_size_are_scaled_into_the_recording(pedestrians, tmp_path, caplog):
    """A stream that changed resolution mid-way (frames of real video, scaled): OpenCV's writer
    dropped every frame not of the first size without a word (50 of 150 frames recorded)."""
    from faceatlas.video.annotate import VideoWriter

    capture = cv2.VideoCapture(str(pedestrians))
    frames = [capture.read()[1] for _ in range(30)]
    capture.release()
    sizes = [(640, 360)] * 10 + [(1280, 720)] * 10 + [(320, 240)] * 10
    writer = VideoWriter(tmp_path / "changed.mp4", 25)
    for frame, size in zip(frames, sizes, strict=True):
        writer.write(cv2.resize(frame, size))
    writer.close()
    recorded, _ = _real_fps(tmp_path / "changed.mp4")
    assert recorded == 30 and writer.resized == 20
    assert "changed from 640x360 to 1280x720" in caplog.text


def test_a_line_or_zone_outside_the_frame_is_warned_about(pedestrians, memory, caplog):
    """`--line 5000,5000,6000,5000` on a 1280x720 video counted nothing and said only "in 0, out 0"."""
    from faceatlas.video.zones import LineSpec, ZoneSpec

    camera = CameraConfig(source=str(pedestrians), name="hall", faces=False, persons=False,
                          lines=[LineSpec((5000, 5000), (6000, 5000), "far"), LineSpec((0, 300), (9000, 300), "wide")],
                          zones=[ZoneSpec("away", [(2000, 2000), (2100, 2000), (2100, 2100)])])
    pipeline = VideoPipeline(camera, None, EventBus([memory]))
    capture = cv2.VideoCapture(str(pedestrians))
    from faceatlas.video.sources import Frame

    pipeline.process(Frame(0, 0.0, capture.read()[1]), 25.0)
    capture.release()
    pipeline.finish()
    assert "line far is outside the 1280x720 frame" in caplog.text
    assert "zone away is outside the 1280x720 frame" in caplog.text
    assert "line wide" not in caplog.text  # across the frame and beyond it: a line that counts
