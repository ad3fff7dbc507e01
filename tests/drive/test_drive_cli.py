"""`faceatlas drive` as a user runs it, on the real night-cabin clip: what it refuses, and how it
says so (one line, or one JSON object on stdout with --json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import pytest
from typer.testing import CliRunner

pytest.importorskip("mediapipe")

from faceatlas.cli.main import app
from tests.clips import sideways
from tests.full_disk import run_cli_on_a_full_disk

runner = CliRunner()


@pytest.fixture(scope="module")
def video(shared: Path) -> str:
    return str(shared / "data/videos/driver_night_cabin.mp4")


def json_error(stdout: str) -> dict:
    """The one JSON object of a --json run that failed: nothing else on stdout."""
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    answer = json.loads(lines[0])
    assert set(answer) == {"error", "message"}, answer
    return answer


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--max-frames", "0"], "validation_error", "max_frames"),
    (["--calibration", "-1"], "validation_error", "calibration_s"),
    (["--region", "0,0,2,1"], "validation_error", "x1,y1,x2,y2"),
    (["--region", "a,b,c,d"], "usage", "x1,y1,x2,y2"),
])
def test_drive_json_errors_are_one_json_object(video: str, args: list[str], code: str, says: str) -> None:
    result = runner.invoke(app, ["drive", video, "--json", "-q", *args])
    assert result.exit_code == 2, result.output
    error = json_error(result.stdout)
    assert error["error"] == code and says in error["message"]


def test_a_file_that_is_no_video_is_a_json_error(tmp_path: Path) -> None:
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n")
    result = runner.invoke(app, ["drive", str(text), "--json", "-q"])
    assert result.exit_code == 2, result.output
    error = json_error(result.stdout)
    assert error["error"] == "bad_request" and "text.mp4" in error["message"]


def test_a_phone_video_stored_sideways_is_watched_and_written_upright(video: str, tmp_path: Path) -> None:
    """A portrait video a phone stored sideways (landscape, with a display rotation): the driver's
    face lay on its side (no face found on any frame) and the output was written sideways."""
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 345)
    portrait = []
    for _ in range(25):
        ok, frame = capture.read()
        assert ok
        portrait.append(cv2.resize(frame[:, 330:870], (360, 480)))  # 360 wide, 480 high: the driver's face
    capture.release()
    out = tmp_path / "out.mp4"
    result = runner.invoke(app, ["drive", str(sideways(portrait, tmp_path / "phone.mp4")), "-o", str(out),
                                 "--json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])["summary"]
    assert summary["frames"] == 25 and summary["face_frames"] == 25
    with av.open(str(out)) as written:
        first = next(written.decode(video=0))
        assert (first.width, first.height, first.rotation) == (360, 480, 0)


@pytest.fixture
def clip(video: str, tmp_path: Path) -> Path:
    """A copy of the clip that a run may (wrongly) overwrite."""
    copy = tmp_path / "in.mp4"
    copy.write_bytes(Path(video).read_bytes())
    return copy


def test_outputs_that_are_the_source_or_each_other_are_refused(clip: Path, tmp_path: Path) -> None:
    """`-o in.mp4` made the input a 2-frame video and `--events in.mp4` truncated it to 0 bytes (exit 0);
    `--events b.mp4 -o b.mp4` wrote the events into the video. Links count as the file they point to."""
    original = clip.read_bytes()
    (tmp_path / "link.mp4").symlink_to(clip)
    (tmp_path / "hard.mp4").hardlink_to(clip)
    same = [["-o", str(clip)], ["--events", str(clip)], ["-o", str(tmp_path / "link.mp4")],
            ["--events", str(tmp_path / "hard.mp4")], ["--events", str(tmp_path / "out" / ".." / "in.mp4")]]
    for args in same:
        result = runner.invoke(app, ["drive", str(clip), "--json", "-q", "--max-frames", "2", *args])
        assert result.exit_code == 2, (args, result.output)
        error = json_error(result.stdout)
        assert error["error"] == "validation_error" and "is the source video" in error["message"], args
        assert clip.read_bytes() == original, args
    both = tmp_path / "out" / "b.mp4"
    result = runner.invoke(app, ["drive", str(clip), "-q", "--max-frames", "2", "--events", str(both), "-o", str(both)])
    assert result.exit_code == 2 and "one file" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not both.exists()


def test_an_output_name_that_is_not_utf8_is_refused_not_a_crash(video: str, tmp_path: Path) -> None:
    """OpenCV's writer crashed the process (exit 139) on a file name with bytes that are not UTF-8.
    Run in a process of its own, so that a crash is an exit status here."""
    output = os.fsencode(tmp_path) + b"/o\xff.mp4"
    run = subprocess.run([sys.executable, "-m", "faceatlas.cli", "drive", video, "-q", "--json", "--max-frames", "2",
                          "-o", output], capture_output=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    error = json_error(run.stdout.decode())
    assert error["error"] == "validation_error" and "UTF-8" in error["message"]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("region", ["0,0,1,0.0005", "0.5,0.5,0.5001,0.5002"])
def test_a_sliver_of_a_region_has_no_face_and_no_traceback(video: str, region: str) -> None:
    """A region of 1 pixel row was an OpenCV resize error (inv_scale_x > 0), one of 0 pixels a cvtColor
    error, both as tracebacks: no face can be there."""
    result = runner.invoke(app, ["drive", video, "-q", "--json", "--max-frames", "3", "--region", region])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])["summary"]
    assert summary["frames"] == 3 and summary["face_frames"] == 0


@pytest.mark.parametrize("seconds", ["nan", "inf", "1e400"])
def test_a_calibration_that_is_no_finite_number_is_refused(video: str, seconds: str) -> None:
    """nan calibrated on the first frame, inf (and 1e400, read as inf) never did."""
    result = runner.invoke(app, ["drive", video, "-q", "--json", "--max-frames", "2", "--calibration", seconds])
    assert result.exit_code == 2, result.output
    error = json_error(result.stdout)
    assert error["error"] == "validation_error" and "calibration_s" in error["message"]


def test_ctrl_c_on_a_file_keeps_the_video_and_says_it_was_interrupted(video: str, tmp_path: Path) -> None:
    """Ctrl-C ended a file's run with exit 0 and a summary that read as the whole file's."""
    import cv2

    from tests.clips import interrupted_run

    output, events = tmp_path / "out.mp4", tmp_path / "events.jsonl"
    run = interrupted_run(["drive", video, "-q", "--json", "-o", str(output), "--events", str(events)], output)
    assert run.returncode == 130, run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])["summary"]
    assert summary["interrupted"] is True and 0 < summary["frames"] < 1501
    written = cv2.VideoCapture(str(output)).get(cv2.CAP_PROP_FRAME_COUNT)  # a valid video: the frames done
    assert abs(written - summary["frames"]) <= 1  # Ctrl-C may land between a frame's analysis and its writing


@pytest.mark.parametrize("args", [["drive"], ["ar", "-e", "glasses"]], ids=["drive", "ar"])
def test_sigterm_while_a_stream_never_opened_ends_with_the_summary(args: list[str]) -> None:
    """SIGTERM (or Ctrl-C) while a stream that never opened was retried: `ar` ended as a live source
    ends, status 0 and its summary; `drive` with status 130 and none (its first frame was awaited
    outside the loop that takes the interrupt)."""
    import select
    import signal

    process = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", args[0], "rtsp://127.0.0.1:1/stream", *args[1:],
                                "-q", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    said, deadline = "", time.monotonic() + 120
    while "Connection refused" not in said and time.monotonic() < deadline:  # the first failure to open, logged
        if select.select([process.stderr], [], [], 1)[0]:
            said += process.stderr.readline()
    process.send_signal(signal.SIGTERM)  # the stream is retried: the run waits for its first frame
    stdout, stderr = process.communicate(timeout=120)
    assert "Connection refused" in said, said + stderr
    assert process.returncode == 0, stderr[-2000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary.get("summary", summary)["frames"] == 0 and "interrupted" not in summary.get("summary", summary)


def test_events_dash_are_json_lines_on_stdout(video: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--events -` created a file named "-"; it is stdout, as for most tools: the events as JSON
    lines there alone (the summary table goes to stderr). With --json, which prints them already,
    it is refused; `-o -` (a video to stdout) is refused clearly."""
    monkeypatch.chdir(tmp_path)
    run = runner.invoke(app, ["drive", video, "-q", "--max-frames", "30", "--region", "0,0,0.2,0.2", "--events", "-"])
    assert run.exit_code == 0, run.output
    assert os.listdir(tmp_path) == []  # no file named "-"
    events = [json.loads(line) for line in run.stdout.splitlines()]  # nothing but JSON lines
    assert [(e["type"], e["frame"]) for e in events] == [("face_not_visible", 25)]  # no face in that corner
    assert "SenseDrive summary" in run.stderr
    twice = runner.invoke(app, ["drive", video, "-q", "--json", "--max-frames", "2", "--events", "-"])
    assert twice.exit_code == 2 and "--json writes the events to stdout" in json_error(twice.stdout)["message"]
    to_stdout = runner.invoke(app, ["drive", video, "-q", "--max-frames", "2", "-o", "-"])
    assert to_stdout.exit_code == 2 and "standard output" in to_stdout.stderr, to_stdout.output


@pytest.mark.parametrize("args", [["drive", "99999999999", "-q"], ["ar", "99999999999", "-e", "glasses", "-q"]])
def test_a_webcam_index_beyond_any_camera_is_no_such_camera(args: list[str]) -> None:
    """It was a traceback of the reader thread (cv2.error: integer won't fit into a C int), then
    a summary of 0 frames and exit 0."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "no such camera" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args", [["drive", "99", "-q"], ["ar", "99", "-e", "glasses", "-q"]])
def test_a_webcam_that_does_not_open_is_one_line(args: list[str]) -> None:
    """`drive 7` (no such webcam) printed OpenCV's lines of each backend it tried ("[ WARN:0@4.078] ...
    can't open camera by index", an FFmpeg exception over five lines, "[ERROR:0@4.084] ... Camera index
    out of range") and a log line "source 7 failed: cannot open camera 7" before the error itself.
    OpenCV's log level is its own again after the open: a running camera's warnings are still said."""
    run = subprocess.run([sys.executable, "-m", "faceatlas.cli", *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.splitlines() == ["error (bad_request): cannot read video source '99': cannot open camera 99"]
    import cv2

    from faceatlas.video.sources import _open_camera

    before = cv2.utils.logging.getLogLevel()
    assert not _open_camera(99).isOpened()
    assert cv2.utils.logging.getLogLevel() == before


def test_an_output_that_cannot_be_written_is_named_not_the_source(video: str, monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """-o /proc/x.mp4 was "cannot read video source '...mp4': /proc/x.mp4: could not open the video
    for writing" at the first frame; it is refused before the source is opened, naming the output
    (and --events likewise), and a writer that fails later (the check skipped here) names it too."""
    for option, path in (("-o", "/proc/x.mp4"), ("--events", "/proc/e.jsonl")):
        result = runner.invoke(app, ["drive", video, option, path, "-q", "--json", "--max-frames", "2"])
        assert result.exit_code == 2, result.output
        error = json_error(result.stdout)
        assert error["error"] == "bad_request" and f"{path} cannot be written" in error["message"], error
        assert "video source" not in error["message"]
    monkeypatch.setattr("faceatlas.apps.drive.run.prepare_output_file", lambda *args, **kwargs: None)
    result = runner.invoke(app, ["drive", video, "-o", "/proc/x.mp4", "-q", "--json", "--max-frames", "2"])
    assert result.exit_code == 2, result.output
    error = json_error(result.stdout)
    assert error["message"].startswith("cannot write the output video: /proc/x.mp4"), error


def test_a_video_write_that_fails_mid_run_is_an_error_not_a_summary(video: str, tmp_path: Path) -> None:
    """A disk that fills up during the run (no file past 48 KiB here; the first frames fit): OpenCV's
    writer only logged "Failed to write frame", the summary was printed, exit 0, and the file was
    cut short and played nowhere. The docs promise `cannot write the output video` and exit 2."""
    output = tmp_path / "big.mp4"
    run = run_cli_on_a_full_disk(["drive", video, "-o", output, "-q", "--max-frames", "12"], 48 * 1024)
    assert run.returncode == 2, run.stderr[-2000:]
    assert f"error (bad_request): cannot write the output video: {output}: file too large" in run.stderr
    assert "Failed to write frame" not in run.stderr and "summary" not in run.stdout, run.stdout


@pytest.mark.parametrize(("frames", "limit"), [("300", 200 * 1024), ("3", 40_000)], ids=["at-a-write", "at-the-close"])
def test_a_video_cut_short_by_a_failed_write_is_removed(video: str, tmp_path: Path, frames: str, limit: int) -> None:
    """`(ulimit -f 200; faceatlas drive ... -o d.mp4 --events e.jsonl)` said what failed, but d.mp4 stayed,
    cut short: a file that plays nowhere. It is removed, and the message says so; the events file
    stays. (Three frames fit in the muxer's buffer: that video fails as it is closed.)"""
    output, events = tmp_path / "d.mp4", tmp_path / "e.jsonl"
    run = run_cli_on_a_full_disk(["drive", video, "-q", "--max-frames", frames, "-o", output, "--events", events],
                                 limit)
    assert run.returncode == 2, run.stderr[-2000:]
    said = f"error (bad_request): cannot write the output video: {output}: file too large"
    assert run.stderr.strip().splitlines()[-1] == f"{said} (the partial output was removed)"
    assert not output.exists() and events.exists()


def test_a_run_that_fails_leaves_no_folder_it_made(tmp_path: Path) -> None:
    """`drive /nonexist.mp4 -o n1/a/x.mp4 --events n2/b/e.jsonl` exited 2 and left n1/a and n2/b, made for
    the outputs before the source was opened. Only the empty folders the run made go: one that was
    there stays."""
    (tmp_path / "kept").mkdir()
    result = runner.invoke(app, ["drive", str(tmp_path / "none.mp4"), "-q", "-o", str(tmp_path / "n1" / "a" / "x.mp4"),
                                 "--events", str(tmp_path / "kept" / "b" / "e.jsonl")])
    assert result.exit_code == 2 and "error (file_not_found): video source" in result.stderr, result.output
    assert os.listdir(tmp_path) == ["kept"] and os.listdir(tmp_path / "kept") == []


def test_an_events_file_that_cannot_be_written_is_named_not_the_source(video: str, tmp_path: Path) -> None:
    """Events past a file size limit (the second line here) were "cannot read video source", and even
    that was lost: the events file's close failed the same way and its raw error was all that was
    said, `error (error): [Errno 27] File too large`."""
    events = tmp_path / "events.jsonl"
    run = run_cli_on_a_full_disk(["drive", video, "-q", "--max-frames", "200", "--events", events], 100)
    assert run.returncode == 2, run.stderr[-2000:]
    said = f"error (bad_request): cannot write the events {events}: file too large"
    assert run.stderr.strip().splitlines()[-1] == said
    assert "video source" not in run.stderr and "Errno" not in run.stderr and "summary" not in run.stdout


def test_events_to_a_reader_that_went_away_end_quietly(video: str) -> None:
    """`--events - | head -1` ended with "cannot read video source ...: Broken pipe" (exit 2); it ends
    as `faceatlas` ends on a closed pipe elsewhere: nothing said, status 141 (see docs/drive.md)."""
    child = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "drive", video, "-q", "--max-frames", "400",
                              "--events", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    first = child.stdout.readline()  # the first event (frame 106); the next comes 44 frames later
    child.stdout.close()
    _, stderr = child.communicate(timeout=300)
    assert json.loads(first)["type"] == "face_not_visible", first
    assert child.returncode == 141, stderr[-2000:]
    assert "error" not in stderr and "summary" not in stderr, stderr


@pytest.mark.parametrize("command", [
    ["drive", "{video}", "-q", "--json", "--max-frames", "3"],  # the summary
    ["drive", "{video}", "-q", "--json", "--max-frames", "120"],  # an event first (frame 106)
    ["drive", "{video}", "-q", "--max-frames", "3"],  # the summary's table
    ["ar", "{video}", "-e", "glasses", "-q", "--json", "--max-frames", "2"],
    ["batch", "embed", "{images}", "--out", "{out}", "--json", "--workers", "1"],
], ids=["drive-json", "drive-event", "drive-table", "ar-json", "batch-json"])
def test_a_stdout_that_cannot_be_written_is_one_line_on_stderr(command: list[str], video: str, examples: Path,
                                                               tmp_path: Path) -> None:
    """`drive --json > /dev/full` (and `ar --json`, `batch embed --json`) printed a Rich traceback and
    exited 1: the summary could not be written, and then neither could the JSON error, on that same
    stdout. Stdout buffered, as in a shell (unbuffered, the print fails rather than the flush)."""
    if command[0] == "batch":
        pytest.importorskip("ray")
        (tmp_path / "images").mkdir()
        (tmp_path / "images" / "a.jpg").write_bytes((examples / "examples" / "obama-240p.jpg").read_bytes())
    args = [arg.format(video=video, images=tmp_path / "images", out=tmp_path / "out") for arg in command]
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, "-m", "faceatlas.cli", *args], stdout=full, stderr=subprocess.PIPE,
                             text=True, env=env, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr[-2000:]
    said = "error (bad_request): cannot write the standard output: no space left on device"
    assert run.stderr.strip().splitlines()[-1] == said


@pytest.mark.parametrize("option", ["--output", "--events"])
def test_an_empty_output_path_is_refused_naming_the_option(video: str, option: str, tmp_path: Path) -> None:
    """`--events ''` (an unset shell variable) was the current folder: "error (bad_request): .: is a
    directory"; `-o ''` "cannot write a video with suffix '(none)'"."""
    result = runner.invoke(app, ["drive", video, option, "", "-q", "--json", "--max-frames", "2"])
    assert result.exit_code == 2, result.output
    error = json_error(result.stdout)
    assert error["error"] == "validation_error", error
    assert error["message"].startswith(f"{option} is empty: give a file, such as "), error


def test_quiet_prints_nothing_on_stderr(video: str) -> None:
    """`-q` still printed MediaPipe's start-up lines ("INFO: Created TensorFlow Lite XNNPACK delegate",
    "W0000 ... inference_feedback_manager.cc", absl's "WARNING: All log messages before ...") and
    protobuf's "UserWarning: SymbolDatabase.GetPrototype() is deprecated"."""
    run = subprocess.run([sys.executable, "-m", "faceatlas.cli", "drive", video, "-q", "--json", "--max-frames", "3"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr == ""
    assert json.loads(run.stdout.strip().splitlines()[-1])["summary"]["frames"] == 3


def test_only_mediapipe_start_up_lines_are_dropped_from_stderr() -> None:
    """What else comes on standard error while a graph starts (a warning of another thread, a
    MediaPipe error) is written after it, in order; without quiet_mediapipe(native=True), nothing is held."""
    script = ("import os\nfrom faceatlas.apps.drive import quiet_mediapipe\n"
              "from faceatlas.apps.drive.mesh import graph_start\n"
              "with graph_start():\n    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
              "quiet_mediapipe(native=True)\nwith graph_start():\n    with graph_start():\n"
              "        os.write(2, b'W0000 00:00:1796579314.406438    7763 inference_feedback_manager.cc:114] Feedback "
              "manager requires a model with a single signature inference. Disabling support for feedback tensors.\\n"
              "E0000 something else\\n')\n"
              "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to "
              "STDERR\\nlast\\n')\nos.write(2, b'after\\n')\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nE0000 something else\nlast\nafter\n"
