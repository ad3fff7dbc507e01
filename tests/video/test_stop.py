"""Ctrl-C / SIGTERM in `faceatlas watch` (``run_cameras``): every camera ends its open tracks and
its events reach the sinks before the call returns."""

from __future__ import annotations

import _thread
import contextlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest

from faceatlas.video.config import CameraConfig
from faceatlas.video.pipeline import VideoPipeline, run_cameras
from faceatlas.video.sinks import EventBus

from .conftest import MemorySink


def test_an_interrupt_waits_for_every_camera_to_finish(pedestrians: Path, memory: MemorySink,
                                                       monkeypatch) -> None:
    """A KeyboardInterrupt landing in Thread.join marks the still running camera thread as ended
    (CPython 3.11, gh-90882): run_cameras used to return at once with no stats while the camera was
    still working, and `watch` closed the sinks under it (track_ended events lost, "I/O operation
    on closed file", or the process aborted: "terminate called without an active exception")."""
    pipeline = VideoPipeline(CameraConfig(source=str(pedestrians), name="hall"), None, EventBus([memory]))
    real_process, real_finish = pipeline.process, pipeline.finish
    finished, first_frame = threading.Event(), threading.Event()

    def slow_process(frame, fps):  # a frame takes as long as a model's analysis
        time.sleep(0.02)
        real_process(frame, fps)
        if not first_frame.is_set():  # Ctrl-C (SIGTERM is turned into it) while the camera runs, however
            first_frame.set()  # long it took to start on a loaded machine (the clip lasts 341 frames: 7 s)
            threading.Timer(0.3, _thread.interrupt_main).start()

    def slow_finish() -> None:  # ending the tracks and flushing takes a moment too
        time.sleep(0.5)
        real_finish()
        finished.set()

    monkeypatch.setattr(pipeline, "process", slow_process)
    monkeypatch.setattr(pipeline, "finish", slow_finish)
    stats = run_cameras([pipeline])
    assert finished.is_set(), "run_cameras returned before the camera had finished"
    assert [s.camera for s in stats] == ["hall"]
    assert 0 < stats[0].frames < 341  # stopped early, not at the end of the clip
    assert stats[0].interrupted and stats[0].to_dict()["interrupted"]  # watch then exits 130, as ar and drive


def test_stop_ends_a_camera_that_is_reconnecting_at_once(memory: MemorySink) -> None:
    """A live camera between reconnections has no frame to give: stop() waited out its backoff (up
    to 30 s, the reader ran on after "stopping 1 camera(s)") and the interrupted `watch` closed the
    sinks while the camera still had tracks to end."""
    pipeline = VideoPipeline(CameraConfig(source="rtsp://127.0.0.1:1/stream", name="gate"), None, EventBus([memory]))
    done = threading.Event()
    thread = threading.Thread(target=lambda: (pipeline.run(), done.set()), daemon=True)
    thread.start()
    time.sleep(1.5)  # refused at once, then waiting to reconnect
    stopped = time.monotonic()
    pipeline.stop()
    assert done.wait(15), "the camera was still waiting on its source"
    assert time.monotonic() - stopped < 15 and pipeline.stats.frames == 0
    assert not pipeline.stats.interrupted  # a live camera's stop is its end, not an interruption


def test_a_second_ctrl_c_while_watch_stops_keeps_the_summary_and_the_outputs(hamilton: Path, tmp_path: Path) -> None:
    """A second Ctrl-C while `faceatlas watch` stopped (the camera ending its tracks, closing its
    video) ended the process there: no summary, track_ended events missing, and an output MP4
    without its index (unreadable). It is now ignored until the outputs are closed."""
    output, events = tmp_path / "out.mp4", tmp_path / "events.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "watch", str(hamilton), "--no-persons", "--pack",
                              "scrfd-mbf", "--output", str(output), "--events", str(events)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (output.exists() and output.stat().st_size > 50_000) and time.monotonic() < deadline:
            time.sleep(0.02)  # some frames written
        child.send_signal(signal.SIGINT)
        assert child.stderr is not None
        lines = []
        while "stopping 1 camera(s)" not in (line := child.stderr.readline()) and line:
            lines.append(line)
        child.send_signal(signal.SIGINT)  # the second Ctrl-C, while the camera stops
        rest = child.stderr.read()
        child.wait(60)
    finally:
        child.kill()
    stderr = "".join(lines) + rest
    assert "interrupted: camera short_hamilton_clip stopped after" in stderr, stderr  # the summary
    assert child.returncode == 130
    frames = int(re.search(r"stopped after (\d+) frames", stderr).group(1))  # type: ignore[union-attr]
    with av.open(str(output)) as video:  # closed: its index written
        assert sum(1 for _ in video.decode(video=0)) == frames
    kinds = [json.loads(line)["type"] for line in events.read_text().splitlines()]
    assert kinds.count("track_started") == kinds.count("track_ended") > 0 and "counts" in kinds


@pytest.mark.parametrize("stderr_is", ["a file", "a terminal"])
def test_events_to_a_reader_that_went_away_stop_the_run_quietly(hamilton: Path, tmp_path: Path, stderr_is: str) -> None:
    """`watch clip --events - | head -1` wrote a BrokenPipeError traceback, ran the whole clip for
    nobody, said "JsonlSink: N events not delivered" and exited 1: it stops at once, says nothing
    and exits 141 (128 + SIGPIPE), as `drive` and the other commands do (README). With stderr a
    terminal (the progress bar shows), the events went to the terminal, above the bar, not the pipe."""
    output = tmp_path / "out.mp4"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "FACEATLAS_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}"}
    log = tmp_path / "stderr.txt"
    terminal, side = pty.openpty() if stderr_is == "a terminal" else (None, None)
    with open(log, "w") as into:
        child = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "watch", str(hamilton), "--no-persons",
                                  "--pack", "scrfd-mbf", "--events", "-", "--output", str(output)],
                                 env=env, stdout=subprocess.PIPE, stderr=side if side is not None else into, text=True)
    if side is not None:
        os.close(side)
        threading.Thread(target=_drain, args=(terminal,), daemon=True).start()  # a terminal that is read
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        child.stdout.close()
        child.wait(timeout=300)
    finally:
        child.kill()
    stderr = log.read_text()
    assert first and json.loads(first)["type"], (first, stderr[-2000:])
    assert child.returncode == 141, stderr[-2000:]
    assert "Traceback" not in stderr and "not delivered" not in stderr, stderr[-2000:]
    with av.open(str(hamilton)) as clip:
        frames = sum(1 for _ in clip.decode(video=0))
    with av.open(str(output)) as video:  # stopped before the clip's end, its output closed
        written = sum(1 for _ in video.decode(video=0))
    assert 0 < written < frames, (written, frames)


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 4096):
            pass
