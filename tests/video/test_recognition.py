"""The Hamilton clip (9 s, Lin-Manuel Miranda) through the pipeline, recognised via the gallery."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceatlas.gallery import Gallery
from faceatlas.video.config import CameraConfig
from faceatlas.video.identity import GalleryMatcher
from faceatlas.video.pipeline import VideoPipeline
from faceatlas.video.sinks import EventBus, JsonlSink, events_from_jsonl

LIN = "lin-manuel-miranda"


@pytest.fixture
def gallery(tmp_path: Path, fast_analyzer, examples: Path):
    with Gallery.open(f"sqlite:///{tmp_path / 'gallery.db'}", index_dir=tmp_path / "idx") as gallery:
        gallery.create_collection("people", fast_analyzer)
        gallery.enrol_images("people", "alex", [examples / "examples" / "alex-lacamoire.png"], fast_analyzer,
                             name="Alex Lacamoire")
        gallery.enrol_images("people", "obama", [examples / "examples" / "obama-720p.jpg"], fast_analyzer,
                             name="Barack Obama")
        yield gallery


def _run(hamilton: Path, fast_analyzer, matcher, tmp_path: Path, **camera) -> list:
    events = tmp_path / "events.jsonl"
    bus = EventBus([JsonlSink(events)])
    config = CameraConfig(source=str(hamilton), name="whitehouse", stride=3, persons=False, **camera)
    stats = VideoPipeline(config, fast_analyzer, bus, matcher=matcher).run()
    bus.close()
    assert stats.frames == 275
    return events_from_jsonl(events)


def test_enrolled_subject_is_identified_once(hamilton, fast_analyzer, gallery, examples, tmp_path):
    gallery.enrol_images("people", LIN, [examples / "examples" / "lin-manuel-miranda.png"], fast_analyzer,
                         name="Lin-Manuel Miranda")
    events = _run(hamilton, fast_analyzer, GalleryMatcher(gallery, "people"), tmp_path, watchlist=[LIN],
                  snapshots=tmp_path / "snaps", blur_unlisted=True)
    identified = [e for e in events if e.type == "identified"]
    assert [(e.data["subject"], e.data["name"]) for e in identified] == [(LIN, "Lin-Manuel Miranda")]
    assert identified[0].data["agreeing"] >= 2, "an identity needs several frames' agreement"
    assert not [e for e in events if e.type == "unknown_person" and e.track_id == identified[0].track_id]
    hits = [e for e in events if e.type == "watchlist_hit"]
    assert [e.track_id for e in hits] == [identified[0].track_id]
    assert Path(hits[0].data["snapshot"]).is_file()
    ended = [e for e in events if e.type == "track_ended" and e.track_id == identified[0].track_id]
    assert ended[0].data["subject"] == LIN and ended[0].data["dwell"] > 3.0
    started = {e.track_id for e in events if e.type == "track_started"}
    assert started == {e.track_id for e in events if e.type == "track_ended"}


def test_not_enrolled_subject_is_unknown(hamilton, fast_analyzer, gallery, tmp_path):
    events = _run(hamilton, fast_analyzer, GalleryMatcher(gallery, "people"), tmp_path,
                  output=tmp_path / "annotated.mp4")
    assert not [e for e in events if e.type == "identified"]
    unknown = [e for e in events if e.type == "unknown_person"]
    assert unknown, "the singer's track must be reported as unknown"
    longest = max((e for e in events if e.type == "track_ended"), key=lambda e: e.data["dwell"])
    assert longest.track_id in {e.track_id for e in unknown}
    assert (tmp_path / "annotated.mp4").stat().st_size > 100_000
