"""What a watch writes: never over a source being read or over another of its outputs, files it can
write (named within the file system's limits), and a word when the source itself is cut short."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app
from faceatlas.errors import InvalidArgument, InvalidInput
from faceatlas.video.config import CameraConfig
from faceatlas.video.pipeline import VideoPipeline
from faceatlas.video.sinks import DatabaseSink, EventBus
from faceatlas.video.sources import VideoSource
from faceatlas.video.zones import ZoneSpec
from tests.clips import first_seconds


@pytest.fixture
def clip(shared: Path, tmp_path: Path) -> Path:
    """A second of car-detection.mp4 (12 frames): a video whose bytes must survive the run."""
    return first_seconds(shared / "data" / "videos" / "car-detection.mp4", tmp_path / "clip.mp4", 1.0)


def _watch(*args: str) -> object:
    return CliRunner().invoke(app, ["watch", *map(str, args), "--no-persons"])


def test_no_output_is_a_source_or_another_output(clip: Path, tmp_path: Path) -> None:
    """Only each camera's own output was checked against its own source: camera a's output over
    camera b's source (read meanwhile), the events appended to the source video (also through a
    link), the events and the video in one file, two cameras' videos in one file all ran, exit 0."""
    other = tmp_path / "b.mp4"
    other.write_bytes(clip.read_bytes())
    (tmp_path / "link.mp4").symlink_to(clip)
    before = {path: path.read_bytes() for path in (clip, other)}
    configs = {
        "b.mp4 is camera b's source": f"cameras: [{{name: a, source: {clip}, output: {other}}}, "
                                             f"{{name: b, source: {other}}}]",
        "camera a: output and camera b: output are one file": f"cameras: [{{name: a, source: {clip}, output: "
                                                              f"{tmp_path / 'same.mp4'}}}, {{name: b, source: "
                                                              f"{other}, output: {tmp_path / 'same.mp4'}}}]",
        "database": f"database: sqlite:///{other}\ncameras: [{{name: a, source: {clip}}}, "
                    f"{{name: b, source: {other}}}]",
        "events": f"events: {tmp_path / 'link.mp4'}\ncameras: [{{name: a, source: {clip}}}]",
    }
    for says, body in configs.items():
        (tmp_path / "cams.yaml").write_text(body + "\n")
        result = CliRunner().invoke(app, ["watch", "--config", str(tmp_path / "cams.yaml")])
        assert result.exit_code == 2 and says in result.output, result.output
    for args, says in (([clip, "--events", clip], "events"), ([clip, "--events", tmp_path / "link.mp4"], "events"),
                       ([clip, "--events", tmp_path / "o.mp4", "--output", tmp_path / "o.mp4"],
                        "output and events are one file")):
        result = _watch(*args)
        assert result.exit_code == 2 and says in result.output and "\n" not in result.output.strip(), result.output
    assert {path: path.read_bytes() for path in (clip, other)} == before
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "same.mp4").exists()


def test_the_events_are_never_the_config_file_nor_a_folder_and_are_checked_before_the_models(
        clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--events cams.yaml` appended JSON lines to the YAML (the next start failed); `--events adir`
    (a folder) and `--events ro.jsonl/x.jsonl` (under a file) failed after the models loaded, in the
    system's words ("adir: is a directory", "error (error): ro.jsonl: file exists")."""
    import faceatlas.video.watch as watch_use_case

    def no_models(*args: object, **kwargs: object) -> None:
        raise AssertionError("the models were loaded before the outputs were checked")

    monkeypatch.setattr(watch_use_case, "FaceAnalyzer", no_models)
    config = tmp_path / "cams.yaml"
    body = f"cameras: [{{name: a, source: {clip}}}]\n"
    config.write_text(f"events: {config}\n{body}")
    result = CliRunner().invoke(app, ["watch", "--config", str(config)])
    assert result.exit_code == 2 and "is the configuration file" in result.output, result.output
    config.write_text(body)
    (tmp_path / "adir").mkdir()
    (tmp_path / "ro.jsonl").write_text("")
    for events, says in ((config, f"events {config} is the configuration file"),
                         (tmp_path / "link.yaml", "is the configuration file"),
                         (tmp_path / "adir", f"events {tmp_path / 'adir'} is a folder"),
                         (tmp_path / "ro.jsonl" / "x.jsonl", f"{tmp_path / 'ro.jsonl'} is a file, not a folder")):
        if events.name == "link.yaml":
            events.symlink_to(config)
        result = CliRunner().invoke(app, ["watch", "--config", str(config), "--events", str(events)])
        assert result.exit_code == 2 and "validation_error" in result.output and says in result.output, \
            result.output
    assert config.read_text() == body and (tmp_path / "ro.jsonl").read_text() == ""
    result = _watch(clip, "--events", tmp_path / "adir")  # a source without a file: the same checks
    assert result.exit_code == 2 and "is a folder" in result.output, result.output


def test_a_database_url_this_install_cannot_open_is_refused_before_the_models(
        clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`database: mysql://...` (no MySQLdb here) was a ModuleNotFoundError traceback after the models
    loaded; an unknown scheme was the one line "no database URL this install opens"."""
    import faceatlas.video.watch as watch_use_case

    def no_models(*args: object, **kwargs: object) -> None:
        raise AssertionError("the models were loaded before the database URL was checked")

    monkeypatch.setattr(watch_use_case, "FaceAnalyzer", no_models)
    for url in ("mysql://u@127.0.0.1:1/x", "notaurl://x"):
        (tmp_path / "cams.yaml").write_text(f"database: '{url}'\ncameras: [{{name: a, source: {clip}}}]\n")
        result = CliRunner().invoke(app, ["watch", "--config", str(tmp_path / "cams.yaml")])
        assert result.exit_code == 2 and "no database URL this install opens" in result.output, result.output
        assert "Traceback" not in result.output and not isinstance(result.exception, ImportError)


def test_a_store_camera_output_is_not_another_cameras_source(clip: Path, tmp_path: Path) -> None:
    """retail: one camera's `video: {output: X}`, X another camera's source, ran over it."""
    from faceatlas.apps.retail import StoreConfig
    from faceatlas.apps.retail.live import StoreRun

    other = tmp_path / "till.mp4"
    other.write_bytes(clip.read_bytes())
    config = StoreConfig.model_validate({
        "id": "shop", "cameras": [
            {"id": "door", "role": "door", "source": str(clip), "line": "0,100,200,100",
             "video": {"output": str(other)}},
            {"id": "till", "role": "checkout", "source": str(other)}]})
    with pytest.raises(InvalidArgument, match="output .*till.mp4 is camera till's source"):
        StoreRun(SimpleNamespace(config=config))  # type: ignore[arg-type]


def test_outputs_that_cannot_be_written_are_refused_before_the_run(clip: Path, tmp_path: Path) -> None:
    """An output video that is a folder failed at the first frame as "cannot read video source: ...
    could not open the video for writing"; snapshots under /proc killed the camera mid-run with
    "cannot read video source: [Errno 2]"; an empty source was "a folder"."""
    (tmp_path / "adir.mp4").mkdir()
    result = _watch(clip, "--output", tmp_path / "adir.mp4")
    assert result.exit_code == 2 and "adir.mp4 is a folder" in result.output, result.output
    (tmp_path / "snaps").mkdir()  # a folder without a video's suffix is said to be a folder too (not "suffix '(none)'")
    result = _watch(clip, "--output", tmp_path / "snaps")
    assert result.exit_code == 2 and "snaps is a folder" in result.output, result.output
    (tmp_path / "junk.mp4").write_text("not a video")  # FFmpeg's reason, without its error number
    result = _watch(tmp_path / "junk.mp4")
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "invalid data found when processing input" in said and "Errno" not in said, said
    (tmp_path / "cams.yaml").write_text(f"cameras: [{{name: a, source: {clip}, snapshots: /proc/snaps}}]\n")
    result = CliRunner().invoke(app, ["watch", "--config", str(tmp_path / "cams.yaml")])
    assert result.exit_code == 2 and "snapshots /proc/snaps cannot be written" in result.output, result.output
    result = _watch("")
    assert result.exit_code == 2 and "video source is empty" in result.output, result.output
    assert "cannot read video source" not in result.output


def test_an_output_that_fails_mid_run_is_named_not_the_source(clip: Path, tmp_path: Path) -> None:
    """The writer opens at the first frame: a file made since the start where its folder was to be
    made was "cannot read video source"."""
    camera = CameraConfig(source=str(clip), name="a", faces=False, persons=False, output=tmp_path / "late" / "a.mp4")
    (tmp_path / "late").write_text("a file where the folder was to be")
    with pytest.raises(InvalidInput, match="camera a: cannot write the output video: .*late"):
        VideoPipeline(camera, None, EventBus([])).run()


def test_snapshots_of_a_long_camera_name_are_written_or_left_out(pedestrians: Path, person_detector, memory,
                                                                 tmp_path: Path, caplog) -> None:
    """A camera named with 120 'Ü' (240 bytes, a name it may have) made file names over 255 bytes:
    every snapshot failed and its event pointed at a file that did not exist. A snapshot that cannot
    be written is warned about and counted, and its event names no file."""
    from faceatlas.video.sources import Frame

    zone = ZoneSpec("hall", [(0, 0), (10_000, 0), (10_000, 10_000), (0, 10_000)], max_dwell=0.2)
    capture = VideoSource(pedestrians)
    frames = [frame for frame, _ in zip(capture, range(16))]
    capture.close()

    def run(snapshots: Path, name: str) -> tuple[VideoPipeline, list[dict]]:
        camera = CameraConfig(source=str(pedestrians), name=name, faces=False, stride=1, zones=[zone],
                              snapshots=snapshots)
        if name == "door":  # the folder cannot be made any more: a file took its place since the start
            snapshots.write_text("a file where the folder was")
        pipeline = VideoPipeline(camera, None, EventBus([memory]), persons=person_detector)
        for frame in frames:
            pipeline.process(Frame(frame.index, frame.time, frame.image), 25.0)
        pipeline.finish()
        return pipeline, [e.data for e in memory.of("dwell_exceeded") if e.camera == name]

    long_name = "Ü" * 120
    _, exceeded = run(tmp_path / "snaps", long_name)
    assert exceeded and all(Path(data["snapshot"]).is_file() for data in exceeded), exceeded[:2]
    assert all(len(Path(data["snapshot"]).name.encode()) <= 255 for data in exceeded)
    with caplog.at_level(logging.WARNING):
        pipeline, exceeded = run(tmp_path / "gone", "door")
    assert exceeded and not any("snapshot" in data for data in exceeded)
    assert pipeline.stats.snapshots_failed == len(exceeded) and "could not be written" in caplog.text


def test_a_file_cut_short_says_it_ended_early(shared: Path, tmp_path: Path, caplog) -> None:
    """car-detection.mp4 cut to its first 600,000 bytes: 52 of the 377 frames its index states were
    read, and the run ended as a whole file ("dropped / corrupt 0 / 0", no word)."""
    whole = shared / "data" / "videos" / "car-detection.mp4"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:600_000])
    with caplog.at_level(logging.WARNING):
        source = VideoSource(cut)
        read = sum(1 for _ in source)
    assert read < 100 and source.stats.expected == 377
    assert f"ended after {read} of the 377 frames" in caplog.text
    shown = [row for table in _summary(cut) for row in table]
    assert ("ended early", f"{read} of 377 frames") in shown
    complete = VideoSource(first_seconds(whole, tmp_path / "whole.mp4", 1.0))
    assert sum(1 for _ in complete) > 0 and complete.stats.expected is None  # a whole file says nothing


def _summary(path: Path) -> list[list[tuple[str, str]]]:
    """The watch summary's (measure, value) rows for a camera run over ``path`` (no detection)."""
    from faceatlas.cli.watch import summary_tables
    from faceatlas.video.watch import WatchReport

    stats = VideoPipeline(CameraConfig(source=str(path), faces=False, persons=False), None, EventBus([])).run()
    table = summary_tables(WatchReport([stats]))[0]
    measures, values = (list(column.cells) for column in table.columns[1:3])
    return [list(zip(measures, values))]


def test_names_are_printed_as_written_not_as_rich_markup_or_emoji(tmp_path, capsys):
    """A line named "[/door]" crashed the watch summary with a MarkupError after the run (exit 1, which
    says events were lost); a camera "Lobby [east]" showed as "Lobby" (in the progress bar too); a
    zone 'door' was "zone🚪max" in `faceatlas counts`."""
    import io

    from rich.console import Console

    from faceatlas.cli import watch as watch_cli
    from faceatlas.cli.files import progress
    from faceatlas.video.events import Event
    from faceatlas.video.pipeline import PipelineStats
    from faceatlas.video.watch import WatchReport

    stats = PipelineStats("Lobby [east]", frames=10, analyzed=5, seconds=1.0,
                          line_counts={"[/door]": {"in": 1, "out": 0}, ":car:": {"in": 2, "out": 0}},
                          class_counts={"[/door]": {"person": {"in": 1, "out": 0}}})
    for table in watch_cli.summary_tables(WatchReport([stats], {"line_crossed": 3})):
        watch_cli.err.print(table)
    shown = capsys.readouterr().err
    assert "Lobby [east]" in shown and "[/door] crossings" in shown and "[/door] person" in shown, shown
    assert ":car: crossings" in shown, shown
    screen = io.StringIO()
    with progress(Console(file=screen, width=100)) as bar:
        bar.update(bar.add_task("Lobby [east]", total=2), completed=2)
    assert "Lobby [east]" in screen.getvalue(), screen.getvalue()

    url = f"sqlite:///{tmp_path / 'events.db'}"
    sink = DatabaseSink(url)
    sink.emit(Event("counts", "Lobby [east]", 1, 1.0, data={"minute": "2026-12-04T10:00", "classes": {
        "person": {"seen": 2, "zone:door:max": 1, "zone:[/b]:mean": 0.5}}}))
    sink.close()
    result = CliRunner().invoke(app, ["counts", "Lobby [east]", "--db", url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Lobby [east]: counts per minute" in result.output, result.output
    assert "zone:[/b]:mean 0.5, zone:door:max 1" in result.output and "🚪" not in result.output, result.output


def test_each_event_keeps_a_snapshot_of_its_own_across_runs_and_tenants(pedestrians: Path, person_detector,
                                                                        tmp_path: Path) -> None:
    """Snapshots were named ``<camera>_<frame>_<track>_<type>.jpg``: a second run of the camera, here
    tenant beta's into the snapshots folder tenant acme's run used, wrote over acme's pictures, and
    erasing beta deleted the file acme's event still showed (its snapshot then 404). Each event
    now has a file of its own; erasing beta leaves every one of acme's."""
    from faceatlas.video.sources import Frame
    from faceatlas.video.store import erase_tenant_events, event_snapshot, list_events, open_events_db

    zone = ZoneSpec("hall", [(0, 0), (10_000, 0), (10_000, 10_000), (0, 10_000)], max_dwell=0.2)
    capture = VideoSource(pedestrians)
    frames = [frame for frame, _ in zip(capture, range(16))]
    capture.close()
    url = f"sqlite:///{tmp_path / 'events.db'}"
    camera = CameraConfig(source=str(pedestrians), name="hall", faces=False, stride=1, zones=[zone],
                          snapshots=tmp_path / "snaps")
    for tenant in ("acme", "beta"):  # the same camera and frames: the same frame, track and type
        bus = EventBus([DatabaseSink(url, tenant=tenant)])
        pipeline = VideoPipeline(camera, None, bus, persons=person_detector)
        for frame in frames:
            pipeline.process(Frame(frame.index, frame.time, frame.image), 25.0)
        pipeline.finish()
        bus.close()
    engine = open_events_db(url)
    kept = {tenant: {e.id: e.data["snapshot"] for e in list_events(engine, tenant, type="dwell_exceeded")}
            for tenant in ("acme", "beta")}
    assert kept["acme"] and len(kept["acme"]) == len(kept["beta"])
    paths = [*kept["acme"].values(), *kept["beta"].values()]
    assert len(set(paths)) == len(paths) and all(Path(p).is_file() for p in paths)
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == sorted(Path(p).name for p in paths)
    for tenant, snapshots in kept.items():
        for event_id, path in snapshots.items():
            assert event_snapshot(engine, tenant, event_id) == Path(path).read_bytes()
    assert erase_tenant_events(engine, "beta") > 0
    assert not any(Path(p).exists() for p in kept["beta"].values())
    for event_id, path in kept["acme"].items():
        assert event_snapshot(engine, "acme", event_id) == Path(path).read_bytes()
    engine.dispose()


def test_an_output_that_fills_the_disk_mid_run_is_named(clip: Path, tmp_path: Path) -> None:
    """A disk that fills up during the run (no file past 16 KiB, half of the 12 frames): OpenCV's
    writer only logged "Failed to write frame" and the run ended as if the video were whole. Run in a
    process of its own, whose files the limit holds."""
    from tests.full_disk import file_size_limit

    output = tmp_path / "big.mp4"
    script = ("import sys\nfrom faceatlas.video.config import CameraConfig\n"
              "from faceatlas.video.pipeline import VideoPipeline\nfrom faceatlas.video.sinks import EventBus\n"
              "camera = CameraConfig(source=sys.argv[1], name='a', faces=False, persons=False, output=sys.argv[2])\n"
              "VideoPipeline(camera, None, EventBus([])).run()\nprint('no error')\n")
    run = subprocess.run([sys.executable, "-c", script, str(clip), str(output)], capture_output=True, text=True,
                         timeout=300, preexec_fn=file_size_limit(16 * 1024))
    assert run.returncode == 1 and "no error" not in run.stdout, run.stderr[-2000:]
    assert f"InvalidInput: camera a: cannot write the output video: {output}: file too large" in run.stderr


def test_a_line_s_crossings_in_the_summary_are_every_class_s(capsys):
    """The summary's "aisle crossings" were the persons' line alone: "in 0, out 0" right above "aisle car:
    in 2, out 2". They are every class's, each class's below them."""
    from faceatlas.cli import watch as watch_cli
    from faceatlas.video.pipeline import PipelineStats
    from faceatlas.video.watch import WatchReport

    stats = PipelineStats("carpark", line_counts={"aisle": {"in": 0, "out": 0}, "empty": {"in": 0, "out": 0}},
                          class_counts={"aisle": {"car": {"in": 2, "out": 2}, "bus": {"in": 1, "out": 0}},
                                        "empty": {}})
    table = watch_cli.summary_tables(WatchReport([stats]))[0]
    rows = dict(zip(*(list(column.cells) for column in table.columns[1:3])))
    assert rows["aisle crossings"] == "in 3, out 2" and rows["aisle car"] == "in 2, out 2"
    assert rows["aisle bus"] == "in 1, out 0" and rows["empty crossings"] == "in 0, out 0"
