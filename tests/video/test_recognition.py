"""The Hamilton clip (9 s, Lin-Manuel Miranda) through the pipeline, recognised via the gallery."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceatlas.gallery import Gallery
from faceatlas.video.config import CameraConfig
from faceatlas.video.identity import GalleryMatcher
from faceatlas.video.pipeline import VideoPipeline
from faceatlas.video.sinks import EventBus, JsonlSink, events_from_jsonl
from faceatlas.video.sources import VideoSource

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


# the clip cuts from the singer to the audience at frame 211; Barack Obama's face is then here
CUT = 211
OBAMA_BOX = np.array([316, 32, 381, 141])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _blur_ratio(written: np.ndarray, source: np.ndarray, box: np.ndarray, others: list[np.ndarray]) -> float | None:
    """How much closer the inner half of a face ``box`` in ``written`` is to the blurred source
    than to the source (median absolute grey difference): below 1 blurred, well above 1 not. None
    when it cannot tell: the face is out of focus in the source already (most of the audience),
    or another face's label is drawn over it (labels sit above the boxes, ``others``)."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) / 4, (y2 - y1) / 4
    left, top, right, bottom = x1 + dx, y1 + dy, x2 - dx, y2 - dy
    if any(o[0] < right and left < o[0] + 80 and o[1] - 30 < bottom and top < o[1] for o in others):
        return None
    inner = (slice(int(top), int(bottom)), slice(int(left), int(right)))
    seen, real = (cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)[inner] for image in (written, source))
    smooth = cv2.blur(cv2.cvtColor(source, cv2.COLOR_BGR2GRAY).astype(np.float32), (15, 15))[inner]
    if np.median(np.abs(real - smooth)) < 3.0:
        return None
    return float(np.median(np.abs(seen - smooth)) / max(float(np.median(np.abs(seen - real))), 0.5))


def test_track_name_does_not_cross_a_scene_cut(hamilton, fast_analyzer, gallery, examples, memory, tmp_path):
    """After the cut to the audience, no track carries Miranda's name onto Obama's face, and with
    ``blur_unlisted`` every face not identified as a watchlist subject is blurred."""
    gallery.enrol_images("people", LIN, [examples / "examples" / "lin-manuel-miranda.png"], fast_analyzer,
                         name="Lin-Manuel Miranda")
    start = 150
    config = CameraConfig(source=str(hamilton), name="whitehouse", stride=3, persons=False, watchlist=[LIN],
                          blur_unlisted=True, output=tmp_path / "annotated.mp4")
    VideoPipeline(config, fast_analyzer, EventBus([memory]), matcher=GalleryMatcher(gallery, "people")).run(
        VideoSource(hamilton, start=start))

    miranda = [e for e in memory.of("identified") if e.data["subject"] == LIN]
    assert miranda and all(e.frame < CUT for e in miranda), "Miranda is identified on stage, and only there"
    ended = {e.track_id: e for e in memory.of("track_ended")}
    assert all(ended[e.track_id].frame == CUT and ended[e.track_id].data["reason"] == "scene_cut" for e in miranda)
    after = [e for e in memory.of("track_started") if e.frame >= CUT]
    on_obama = [e for e in after if _iou(np.array(e.data["box"]), OBAMA_BOX) > 0.5]
    assert on_obama, "Obama's face is tracked after the cut"
    assert not {e.track_id for e in on_obama} & {e.track_id for e in miranda}
    assert all(ended[e.track_id].data.get("subject") in (None, "obama") for e in after)

    capture = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    blurred, sharp = [], []
    for index, frame in enumerate(VideoSource(hamilton, start=start), start):
        ok, written = capture.read()
        assert ok
        if index % 2 or not (miranda[0].frame + 3 <= index < CUT - 3 or index >= CUT):
            continue
        boxes = [face.bbox for face in fast_analyzer.analyze(frame.image, embed=False)]
        for i, box in enumerate(boxes):
            ratio = _blur_ratio(written, frame.image, box, boxes[:i] + boxes[i + 1:])
            if ratio is not None:
                (blurred if index >= CUT else sharp).append((index, _iou(box, OBAMA_BOX) > 0.5, ratio))
    capture.release()
    assert sum(on for _, on, _ in blurred) == len(range(CUT + 1, 275, 2)), "Obama's face in every checked frame"
    assert max(ratio for _, _, ratio in blurred) < 0.7, "faces after the cut are blurred"
    assert len(sharp) > 10 and min(ratio for _, _, ratio in sharp) > 2.0, "the identified singer is left as he is"
