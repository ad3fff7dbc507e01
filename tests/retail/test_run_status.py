"""`faceatlas retail run` ends as `faceatlas watch` does: 130 when SIGTERM (or Ctrl-C) stopped a
file's camera before its end, 1 when a sink could not deliver some events or some cameras failed
(2: every one), each said on stderr and in the --json summary. The first two ended in 0 without a
word (a SIGTERM after 55 of 1,501 frames; 49 events lost to a closed webhook port, said only in a
log line). Real runs: the door camera on the first seconds of one-by-one-person-detection.mp4, a
webhook on a port nobody listens on, a camera whose file over HTTP breaks off halfway."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.clips import as_mpegts, first_seconds, http_server


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


def _store(folder: Path, door: Path, webhook: str = "") -> Path:
    config = folder / "store.yaml"
    config.write_text(f"""\
id: status-store
cameras:
  - {{id: door, role: door, source: "{door}", line: "0,386,768,170", stride: 2, faces: false}}
events: "{folder / 'events.jsonl'}"
{webhook}""")
    return config


def _command(config: Path, folder: Path) -> list[str]:
    return [sys.executable, "-m", "faceatlas.cli", "retail", "run", str(config), "--database",
            f"sqlite:///{folder / 'store.db'}", "--index-dir", str(folder / "idx"), "--pack", "scrfd-mbf", "--json"]


def test_events_a_sink_could_not_deliver_end_the_run_in_1(shared: Path, tmp_path: Path) -> None:
    door = first_seconds(shared / "data" / "videos" / "one-by-one-person-detection.mp4", tmp_path / "door.mp4", 8)
    webhook = (f"webhook: {{url: 'http://127.0.0.1:{_closed_port()}/hook', secret: s3cret, max_attempts: 1, "
               "timeout: 1}\n")
    done = subprocess.run(_command(_store(tmp_path, door, webhook), tmp_path), capture_output=True, text=True,
                          timeout=300, env={**os.environ, "FACEATLAS_THREADS": "1"})
    assert done.returncode == 1, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    lost = summary["undelivered"]
    assert list(lost) == ["WebhookSink"] and lost["WebhookSink"] >= 1, summary
    sent = (tmp_path / "events.jsonl").read_text().splitlines()
    assert lost["WebhookSink"] == len(sent)  # every event the file got, the webhook lost
    assert f"WebhookSink: {lost['WebhookSink']} events not delivered" in done.stderr
    assert summary["interrupted"] == [] and "s3cret" not in done.stderr


def test_a_camera_stopped_before_its_file_s_end_ends_the_run_in_130(shared: Path, tmp_path: Path) -> None:
    door = first_seconds(shared / "data" / "videos" / "one-by-one-person-detection.mp4", tmp_path / "door.mp4", 40)
    events = tmp_path / "events.jsonl"
    with subprocess.Popen(_command(_store(tmp_path, door), tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env={**os.environ, "FACEATLAS_THREADS": "1"}) as process:
        deadline = time.monotonic() + 240
        while not (events.exists() and events.stat().st_size) and process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.2)  # the run has read frames once its first event is written
        assert process.poll() is None, "the run ended before it could be stopped"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] == ["door"] and summary["undelivered"] == {}
    camera = summary["cameras"][0]
    assert 0 < camera["frames"] < 40 * 25 // 2  # fewer than the file's frames at stride 2
    assert f"interrupted: camera door stopped after {camera['frames']} frames" in err


def test_a_camera_that_fails_mid_run_is_named_and_the_others_report_their_run(shared: Path, tmp_path: Path) -> None:
    """The shelf camera's source (a file read over HTTP) stops being readable halfway: its server hangs
    up. The run said one error line (exit 2) and no summary, though the door camera ran to its file's
    end and its events were written. Now the summary is out, the shelf camera named with its reason
    (on stderr and under "failed"), and the exit status is 1: the door camera's results stand."""
    door = first_seconds(shared / "data" / "videos" / "one-by-one-person-detection.mp4", tmp_path / "door.mp4", 8)
    served = tmp_path / "served"
    served.mkdir()
    shelf = as_mpegts(shared / "data" / "videos" / "car-detection.mp4", served / "shelf.ts")
    with http_server(served, hang_up={shelf.name: shelf.stat().st_size // 2}) as base:
        config = _store(tmp_path, door)
        config.write_text(config.read_text().replace(
            "events:", f"  - {{id: shelf, role: zone, zone: cups, source: '{base}/{shelf.name}', "
                       "faces: false}\nevents:"))
        done = subprocess.run(_command(config, tmp_path), capture_output=True, text=True, timeout=300,
                              env={**os.environ, "FACEATLAS_THREADS": "1"})
    assert done.returncode == 1, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert [camera["camera"] for camera in summary["cameras"]] == ["door"] and summary["cameras"][0]["frames"] > 0
    assert list(summary["failed"]) == ["shelf"] and summary["failed"]["shelf"]["error"] == "bad_request"
    assert summary["failed"]["shelf"]["message"].startswith("cannot read video source"), summary
    said = [" ".join(line.split()) for line in done.stderr.splitlines() if line.startswith("error (")]
    assert len(said) == 1 and said[0].startswith("error (bad_request): camera 'shelf': cannot read video source"), \
        done.stderr[-3000:]
    sent = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sent and len(sent) == sum(summary["events"].values())  # the door camera's events were written
    assert {event["camera"] for event in sent} == {"door"}, sent[:3]
