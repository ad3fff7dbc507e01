"""Sources: corrupt frames skipped and counted, a slow consumer drops frames, reconnects."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceatlas.errors import InvalidInput
from faceatlas.video.sources import VideoSource, is_live
from tests.clips import as_mpegts, http_server, sideways


def test_corrupt_packets_are_skipped_and_counted(hamilton: Path, tmp_path: Path):
    data = bytearray(hamilton.read_bytes())
    rng = np.random.default_rng(0)
    for position in rng.integers(100_000, len(data) - 1_000, 40):
        data[position : position + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    source = VideoSource(damaged)
    frames = list(source)
    assert source.stats.corrupt > 0
    assert len(frames) == source.stats.decoded >= 250
    assert [f.index for f in frames] == list(range(len(frames)))


def test_live_source_drops_frames_instead_of_lagging(hamilton: Path):
    source = VideoSource(hamilton, live=True, realtime=True, max_reconnects=0)
    seen = 0
    started = time.monotonic()
    for _ in source:
        seen += 1
        time.sleep(0.1)  # a consumer at 10 fps on a 30 fps camera
    elapsed = time.monotonic() - started
    assert source.stats.dropped > 100
    assert seen + source.stats.dropped == source.stats.decoded == 275
    # a source that lagged would take the consumer's 27.5 s; 4 s of slack for a loaded machine
    assert elapsed < 9.2 + 4, "lag must not grow beyond the clip's own length"


def test_reconnects_with_backoff_then_gives_up():
    source = VideoSource("rtsp://127.0.0.1:9/none", max_reconnects=2, backoff_start=0.05)
    assert is_live(source.spec)
    started = time.monotonic()
    assert list(source) == []
    assert source.stats.reconnects == 2
    assert time.monotonic() - started >= 0.05 + 0.1  # 0.05 s, then doubled


def test_stream_that_ends_is_reopened(hamilton: Path):
    source = VideoSource(hamilton, live=True, buffer=1000, max_reconnects=1, backoff_start=0.01)
    frames = list(source)
    assert source.stats.reconnects == 1
    assert len(frames) == 550 and frames[-1].index == 549
    assert frames[300].time > frames[200].time


def test_start_seeks_a_file_to_that_frame(hamilton: Path):
    everything = list(VideoSource(hamilton))
    source = VideoSource(hamilton, start=200)
    frames = list(source)
    assert [f.index for f in frames] == list(range(200, len(everything)))
    assert all(np.array_equal(a.image, b.image) and a.time == b.time for a, b in zip(frames, everything[200:]))


@pytest.mark.parametrize("rotation", [-90, 90])
def test_a_phone_video_stored_sideways_is_read_upright(hamilton: Path, tmp_path: Path, fast_analyzer,
                                                      rotation: int) -> None:
    """A phone stores a portrait video sideways, with a display rotation a player applies: its frames
    came out sideways (landscape, the faces on their side: none found), for watch, drive and AR alike."""
    upright = [frame.image[:, 400:602] for _, frame in zip(range(8), VideoSource(hamilton))]  # portrait, a face
    assert upright[5].shape == (360, 202, 3) and len(fast_analyzer.analyze(upright[5])) == 1
    frames = list(VideoSource(sideways(upright, tmp_path / "phone.mp4", rotation=rotation)))
    assert len(frames) == 8 and all(frame.image.shape == (360, 202, 3) for frame in frames)
    assert np.abs(frames[5].image.astype(int) - upright[5]).mean() < 4  # the same picture, not turned
    assert len(fast_analyzer.analyze(frames[5].image)) == 1


def test_a_file_that_cannot_be_opened_raises_oserror(tmp_path: Path):
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 100)
    (tmp_path / "audio.wav").write_bytes(b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"
                                         b"@\x1f\x00\x00@\x1f\x00\x00\x01\x00\x08\x00data\x00\x00\x00\x00")
    for spec in (tmp_path / "missing.mp4", tmp_path / "junk.mp4", tmp_path / "audio.wav"):
        with pytest.raises(OSError, match="cannot open video source|no video stream"):
            list(VideoSource(spec))
    with pytest.raises(ValueError, match="files only"):
        VideoSource("rtsp://127.0.0.1:9/none", start=5)


def test_a_live_source_keeps_its_last_failure():
    source = VideoSource("rtsp://127.0.0.1:9/none", max_reconnects=0)
    assert list(source) == []
    assert isinstance(source.error, OSError)


def test_frame_rate_and_seeking_follow_the_frames_not_the_container(pedestrians: Path):
    """The AVI declares an average rate of 50 fps and stamps its frames out of order; its 341
    frames run at 25 fps, in order, and seeking to a frame number lands on that frame. Its header
    counts 682 packets: the frame count (the progress bars' total) is 341, not 682."""
    whole = VideoSource(pedestrians)
    everything = list(whole)
    assert len(everything) == 341 and whole.frames == 341
    assert all(0.039 < b.time - a.time < 0.041 for a, b in zip(everything, everything[1:]))
    source = VideoSource(pedestrians, start=100)
    first = next(iter(source))
    assert source.fps == 25.0
    assert first.index == 100 and np.array_equal(first.image, everything[100].image)
    assert abs(first.time - everything[100].time) < 1e-6


def test_the_pipeline_reports_progress_with_the_frame_count(hamilton) -> None:
    """Issue 16.12: `watch` shows progress; the pipeline reports each frame and the file's frame count."""
    from faceatlas.video import CameraConfig, EventBus, VideoPipeline

    seen: list[tuple[str, int, int | None]] = []
    camera = CameraConfig(source=str(hamilton), name="stage", faces=False, persons=False)
    VideoPipeline(camera, None, EventBus([]), on_frame=lambda *report: seen.append(report)).run()
    assert len(seen) == seen[-1][2] and seen[-1][1] == len(seen) - 1 and {name for name, _, _ in seen} == {"stage"}


def test_a_webcam_index_with_no_camera_fails_at_once() -> None:
    """``faceatlas drive 0`` / ``ar 0`` / ``watch 0`` on a machine with no such camera retried
    "cannot open camera 0" forever; a camera index that never opened is an error at once (a stream
    URL still retries: a camera rebooting comes back)."""
    source = VideoSource("99", max_reconnects=None)
    started = time.monotonic()
    with pytest.raises(OSError, match="cannot open camera 99"):
        next(iter(source))
    assert time.monotonic() - started < 10
    source.close()


@pytest.mark.parametrize("index", ["99999999999", "10000"])
def test_a_webcam_index_beyond_any_camera_is_refused_when_the_source_is_made(index: str) -> None:
    """OpenCV raised "integer won't fit into a C int" in the reader thread for 99999999999: the
    thread died and the run ended as if the camera had sent no frame (frames 0, exit 0)."""
    with pytest.raises(InvalidInput, match="no such camera"):
        VideoSource(index)


def test_a_fault_in_the_live_reader_is_an_error_not_the_end_of_the_source(
        hamilton: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception the reader thread does not expect (here a cv2.error after 5 frames of the clip)
    killed the thread, and the iteration ended as if the source had ended; it is an OSError now,
    after the frames read before it."""
    frames = VideoSource._pyav_frames

    def failing(self: VideoSource, opened: object = None):  # type: ignore[no-untyped-def]
        for count, frame in enumerate(frames(self, opened)):
            if count == 5:
                raise cv2.error("integer won't fit into a C int")
            yield frame

    monkeypatch.setattr(VideoSource, "_pyav_frames", failing)
    source = VideoSource(hamilton, live=True, buffer=100, max_reconnects=3, backoff_start=0.01)
    seen = []
    with pytest.raises(OSError, match="error: integer won't fit"):
        for frame in source:
            seen.append(frame.index)
    assert seen == [0, 1, 2, 3, 4] and source.stats.reconnects == 0
    source.close()


def test_a_file_served_over_http_ends_at_its_end(hamilton: Path, tmp_path: Path) -> None:
    """`watch http://host/clip.mp4` replayed the file forever: a source that ended was reconnected
    like a dropped camera. A file served over HTTP (its length known) is read like a file: every
    frame once, then the end."""
    with http_server(hamilton.parent) as base:
        source = VideoSource(f"{base}/{hamilton.name}", max_reconnects=3, backoff_start=0.01, buffer=1000)
        frames = list(source)
    assert len(frames) == 275 and source.stats.reconnects == 0
    assert [f.index for f in frames] == list(range(275)) and source.live is False and source.frames == 275


def test_an_http_stream_of_no_length_still_reconnects(hamilton: Path, tmp_path: Path) -> None:
    """A live HTTP stream (MPEG-TS, no Content-Length) that ends is a camera that dropped: reopened."""
    as_mpegts(hamilton, tmp_path / "live.ts")
    with http_server(tmp_path, length=False) as base:
        source = VideoSource(f"{base}/live.ts", max_reconnects=1, backoff_start=0.01, buffer=1000)
        frames = list(source)
    assert source.live is True and source.stats.reconnects == 1 and len(frames) > 500  # twice its ~273 frames


def test_a_realtime_file_is_read_at_its_frame_rate_and_drops_what_it_cannot_keep_up_with(hamilton: Path,
                                                                                         tmp_path: Path):
    """``realtime: true`` in cams.yaml read a file as fast as it decoded (150 frames in 0.2 s): the
    pipeline's file source was never paced. The Hamilton clip (29.97 fps) up to 2.5 s (its first
    frame is at 0.85 s: 50 frames): a camera run on it takes the frames' time; a consumer at half the
    frame rate gets about every other frame, the rest dropped and counted, and ends with the clip."""
    from faceatlas.video.config import CameraConfig
    from faceatlas.video.pipeline import VideoPipeline
    from faceatlas.video.sinks import EventBus
    from tests.clips import first_seconds

    clip = first_seconds(hamilton, tmp_path / "clip.mp4", 2.5)
    camera = CameraConfig(source=str(clip), name="replay", faces=False, persons=False, realtime=True)
    stats = VideoPipeline(camera, None, EventBus([])).run()
    frames = stats.frames
    assert frames == stats.source.decoded >= 45 and stats.source.dropped == 0
    assert stats.seconds >= 0.8 * frames / 29.97, f"{frames} frames in {stats.seconds:.2f} s"

    source = VideoSource(clip, realtime=True)
    given = []
    first = last = 0.0
    for frame in source:
        last = time.monotonic()  # the clock from the first frame given to the last (no opening, no last sleep)
        first = first or last
        given.append(frame.index)
        time.sleep(2 / source.fps)  # a consumer at half the frame rate
    elapsed = last - first
    assert len(given) + source.stats.dropped == source.stats.decoded == frames
    assert source.stats.dropped >= frames // 3 and given[-1] >= frames - 3
    # on time, the last frame comes the clip's length after the first (~1.6 s); a source lagging
    # behind a consumer at half the frame rate takes twice that (~3.3 s): 1 s of slack for a loaded machine
    assert elapsed < frames / 29.97 + 1.0, "a slow consumer drops frames instead of lagging behind the clip"
    assert len(list(VideoSource(clip))) == frames  # not realtime: every frame, as fast as decoded


@pytest.mark.parametrize(("url", "says"), [("rtsp://", "names no host"), ("http:///live", "names no host"),
                                           ("rtsp://cam:0/s", "port 0"), ("rtmp://[::1/s", "not a valid URL")])
def test_a_stream_url_that_names_no_host_is_refused_at_once(url: str, says: str, tmp_path: Path) -> None:
    """`watch rtsp://` (no host) was retried for ever, as a camera that is down; it is refused before
    anything loads, in one line, as a webhook URL without a host is. Listening streams keep no host."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app
    from faceatlas.video.watch import stream_problem

    started = time.monotonic()
    result = CliRunner().invoke(app, ["watch", url, "--events", str(tmp_path / "e.jsonl")])
    assert result.exit_code == 2 and says in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and time.monotonic() - started < 20, result.output
    assert stream_problem("rtsp://cam.local/live") is None and stream_problem("udp://@:1234") is None


def test_a_source_that_is_there_but_no_file_to_read_says_what_it_is(hamilton: Path, tmp_path: Path) -> None:
    """`watch pipe.mp4` (a FIFO), a link to itself and /dev/zero said "video source ... not found" though
    each is there: each is named for what it is, before anything loads (a FIFO is never opened: that
    waited for a writer); a missing file is still "not found", a link to a video runs."""
    import os

    from typer.testing import CliRunner

    from faceatlas.cli.main import app
    from faceatlas.video.watch import check_camera_source

    os.mkfifo(tmp_path / "pipe.mp4")
    (tmp_path / "loop.mp4").symlink_to("loop.mp4")
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "moved.mp4")
    for name, says in (("pipe.mp4", "not a regular file but a FIFO (named pipe)"),
                       ("loop.mp4", "a loop of links (to loop.mp4, nothing there to read): not a video file"),
                       ("gone.mp4", f"a dangling link (to {tmp_path / 'moved.mp4'}"),
                       ("/dev/zero", "not a regular file but a device")):
        source = tmp_path / name
        result = CliRunner().invoke(app, ["watch", str(source), "--events", str(tmp_path / "e.jsonl")])
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and f"video source '{source}': {says}" in said and "not found" not in said, said
    assert not (tmp_path / "e.jsonl").exists()
    with pytest.raises(InvalidInput, match="video source '.*missing.mp4' not found"):
        check_camera_source(tmp_path / "missing.mp4")
    (tmp_path / "link.mp4").symlink_to(hamilton)
    check_camera_source(tmp_path / "link.mp4")
