"""A bounded long run: the Hamilton clip looped for ~110 s of video, memory must stay flat."""

from __future__ import annotations

import pytest

from faceatlas.video.config import CameraConfig
from faceatlas.video.identity import EmbeddingMatcher
from faceatlas.video.pipeline import VideoPipeline
from faceatlas.video.sinks import EventBus
from faceatlas.video.sources import Frame, VideoSource

LOOPS = 12  # 12 x 9.2 s = 110 s of video


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
def test_memory_stays_flat_over_looped_clip(hamilton, fast_analyzer, examples, memory):
    matcher = EmbeddingMatcher()
    matcher.add_images(fast_analyzer, "lin", [examples / "examples" / "lin-manuel-miranda.png"], "Lin-Manuel Miranda")
    camera = CameraConfig(source=str(hamilton), name="loop", stride=3, persons=False)
    pipeline = VideoPipeline(camera, fast_analyzer, EventBus([memory]), matcher=matcher)
    rss = []
    offset, elapsed = 0, 0.0
    for _ in range(LOOPS):
        source = VideoSource(hamilton)
        for frame in source:
            pipeline.process(Frame(offset + frame.index, elapsed + frame.time, frame.image), source.fps)
        offset, elapsed = offset + source.stats.decoded, elapsed + source.stats.decoded / source.fps
        rss.append(_rss_mib())
    pipeline.finish()
    assert pipeline.stats.frames == LOOPS * 275
    assert len(memory.of("identified")) >= LOOPS - 2  # one per pass (a track ends at each loop's cut)
    assert not pipeline.tracks
    growth = max(rss[2:]) - rss[2]  # after warm-up
    assert growth < 40, f"RSS grew {growth:.0f} MiB over {LOOPS - 3} loops: {rss}"
