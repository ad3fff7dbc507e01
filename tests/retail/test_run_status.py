"""`faceatlas retail run` ends as `faceatlas watch` does: 130 when Ctrl-C or SIGTERM stopped a file's
camera before its end, 1 when a sink could not deliver some events, each said in the summary and
its --json. Both ended in 0 without a word (a SIGTERM after 55 of 1,501 frames; 49 events lost to a
closed webhook port, said only in a log line). No video is read: the cameras' run is stood in for."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from faceatlas.apps.retail import Camera, StoreConfig, StoreRunReport, live
from faceatlas.video import Event, PipelineStats


class _LostSink:
    """A sink that delivers nothing (a webhook on a closed port)."""

    def __init__(self) -> None:
        self.undelivered = 0

    def emit(self, event: Event) -> None:
        self.undelivered += 1

    def close(self) -> None:
        pass


def test_a_run_reports_the_events_its_sinks_could_not_deliver_and_the_cameras_stopped_early(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clip = tmp_path / "door.mp4"
    clip.write_bytes(b"")  # the run is stood in for: only its existence is checked
    config = StoreConfig(id="s", cameras=[Camera(id="door", role="door", source=str(clip), line="0,5,9,5")])

    def cameras(pipelines: list[Any]) -> list[PipelineStats]:
        for number in range(3):
            pipelines[0].bus.emit(Event("track_started", "door", number, number / 10, track_id=number, kind="person"))
        return [PipelineStats("door", frames=55, interrupted=True)]

    monkeypatch.setattr(live, "build_sinks", lambda _settings: [_LostSink()])
    monkeypatch.setattr(live, "GalleryMatcher", lambda *args, **kwargs: None)
    monkeypatch.setattr(live, "run_cameras", cameras)
    store = SimpleNamespace(config=config, analyzer=SimpleNamespace(calibration=None), gallery=None)
    report = live.StoreRun(store).run()  # type: ignore[arg-type]
    assert report.undelivered == {"_LostSink": 3} and report.interrupted == ["door"]
    assert report.exit_status == 130
    assert StoreRunReport([PipelineStats("door", frames=1501)], undelivered={"WebhookSink": 49}).exit_status == 1
    assert StoreRunReport([PipelineStats("door", frames=1501)]).exit_status == 0


@pytest.mark.parametrize(("report", "status", "says"), [
    (StoreRunReport([PipelineStats("door", frames=55, interrupted=True)]), 130,
     "interrupted: camera door stopped after 55 frames"),
    (StoreRunReport([PipelineStats("door", frames=1501)], undelivered={"WebhookSink": 49}), 1,
     "WebhookSink: 49 events not delivered"),
    (StoreRunReport([PipelineStats("door", frames=1501)]), 0, ""),
])
@pytest.mark.parametrize("as_json", [False, True])
def test_retail_run_exits_as_watch_does(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, report: StoreRunReport,
                                        status: int, says: str, as_json: bool) -> None:
    import faceatlas.apps.retail as retail
    from faceatlas.cli.main import app

    (tmp_path / "store.yaml").write_text("id: s\ncameras:\n  - {id: door, role: door, source: door.mp4}\n")
    monkeypatch.setattr(retail, "run_store", lambda *args, **kwargs: report)
    result = CliRunner().invoke(app, ["retail", "run", str(tmp_path / "store.yaml"), *(["--json"] if as_json else [])])
    assert result.exit_code == status, result.output
    assert says in result.output
    if as_json:
        summary = json.loads(result.stdout.splitlines()[0])
        assert summary["undelivered"] == report.undelivered and summary["interrupted"] == report.interrupted
