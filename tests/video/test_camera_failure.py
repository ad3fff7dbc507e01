"""One camera of several that fails mid-run (its source stops being readable: the server of a file
read over HTTP hangs up halfway) ends alone: the others run to their end and report their summary,
and the failed camera is named with its reason. `watch --config` raised the first failure once all
cameras had ended: one error line, and the summaries of the cameras that ran fine (their events
written) were lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app
from faceatlas.errors import CamerasFailed, InvalidInput
from faceatlas.video.config import CameraConfig
from faceatlas.video.pipeline import VideoPipeline, run_cameras
from faceatlas.video.sinks import EventBus
from faceatlas.video.watch import WatchReport
from tests.clips import as_mpegts, first_seconds, http_server


@pytest.fixture
def broken(shared: Path, tmp_path: Path) -> Path:
    """car-detection.mp4 as MPEG-TS in a folder of its own, to be served by a server that hangs up halfway."""
    folder = tmp_path / "served"
    folder.mkdir()
    return as_mpegts(shared / "data" / "videos" / "car-detection.mp4", folder / "cam.ts")


def _half(path: Path) -> dict[str, int]:
    return {path.name: path.stat().st_size // 2}


def test_run_cameras_ends_a_failed_camera_alone_and_keeps_the_others_stats(shared: Path, broken: Path,
                                                                            memory) -> None:
    clip = shared / "data" / "videos" / "store-aisle-detection.gif"
    with http_server(broken.parent, hang_up=_half(broken)) as base:
        cameras = [CameraConfig(source=str(clip), name="aisle", faces=False, persons=False),
                   CameraConfig(source=f"{base}/{broken.name}", name="street", faces=False, persons=False),
                   CameraConfig(source=str(clip), name="shelf", faces=False, persons=False)]
        pipelines = [VideoPipeline(camera, None, EventBus([memory])) for camera in cameras]
        with pytest.raises(CamerasFailed) as raised:
            run_cameras(pipelines)
    failed = raised.value
    assert [stats.camera for stats in failed.stats] == ["aisle", "shelf"]
    assert all(stats.frames == 67 for stats in failed.stats)
    assert list(failed.failures) == ["street"] and isinstance(failed.failures["street"], InvalidInput)
    assert "cannot read video source" in str(failed.failures["street"])
    assert 0 < pipelines[1].stats.frames < 377  # it failed mid-run, after some frames
    assert failed.code == "cameras_failed" and "camera 'street': cannot read video source" in str(failed)
    # what run_watch reports of it (a library caller reads the status: the failure is not raised there)
    assert WatchReport(cameras=failed.stats, failed=failed.failures).exit_status == 1
    assert WatchReport(cameras=[], failed=failed.failures).exit_status == 2
    assert WatchReport(cameras=failed.stats).exit_status == 0


def test_watch_config_reports_the_cameras_that_ran_and_names_the_one_that_failed(examples: Path, broken: Path,
                                                                                 tmp_path: Path) -> None:
    door = first_seconds(examples / "examples" / "short_hamilton_clip.mp4", tmp_path / "door.mp4", 2.0)
    events = tmp_path / "events.jsonl"
    with http_server(broken.parent, hang_up=_half(broken)) as base:
        (tmp_path / "cams.yaml").write_text(
            f"events: {events}\ncameras:\n"
            f"  - {{name: door, source: {door}, persons: false}}\n"
            f"  - {{name: street, source: '{base}/{broken.name}', persons: false}}\n"
            f"  - {{name: lobby, source: {door}, persons: false}}\n")
        result = CliRunner().invoke(app, ["watch", "--config", str(tmp_path / "cams.yaml"), "--pack", "scrfd-mbf"])
    said = result.output
    assert result.exit_code == 1, said  # some cameras failed, the others' results stand
    lines = [" ".join(line.split()) for line in said.splitlines()]
    failures = [line for line in lines if line.startswith("error (")]
    assert len(failures) == 1 and failures[0].startswith("error (bad_request): camera 'street': cannot read video "
                                                         "source"), said
    rows = [line.split("│")[1].strip() for line in said.splitlines() if line.count("│") >= 3]
    assert "door" in rows and "lobby" in rows and "street" not in rows, said  # the summary of each camera that ran
    written = [json.loads(line) for line in events.read_text().splitlines()]
    assert {event["camera"] for event in written if event["type"] == "track_started"} == {"door", "lobby"}
    assert "track_started" in said and "events database:" in said

    # every camera failed: exit 2, as a command over many inputs that all failed
    with http_server(broken.parent, hang_up=_half(broken)) as base:
        (tmp_path / "one.yaml").write_text(f"cameras:\n  - {{name: street, source: '{base}/{broken.name}', "
                                           "persons: false}\n")
        result = CliRunner().invoke(app, ["watch", "--config", str(tmp_path / "one.yaml"), "--pack", "scrfd-mbf"])
    assert result.exit_code == 2, result.output
    assert "error (bad_request): camera 'street': cannot read video source" in " ".join(result.output.split())
