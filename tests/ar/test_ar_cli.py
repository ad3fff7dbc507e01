"""The `faceatlas ar` command on a short real video (a 720p photo moving across the frame)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from faceatlas.cli.main import app
from tests.clips import sideways

runner = CliRunner()


def _clip(examples, path, frames: int = 8) -> None:
    photo = cv2.imread(str(examples / "examples" / "obama-720p.jpg"))
    small = cv2.resize(photo, (640, 360))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, (640, 360))
    for i in range(frames):
        writer.write(np.roll(small, 3 * i, axis=1))
    writer.release()


def test_cli_writes_a_video_with_the_effects(examples, tmp_path):
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    _clip(examples, clip)
    result = runner.invoke(app, ["ar", str(clip), "--effect", "glasses", "-e", "smooth", "--output", str(out), "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 8 and summary["most_faces"] == 1
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    ok, first = capture.read()
    capture.release()
    source = cv2.VideoCapture(str(clip))
    _, original = source.read()
    source.release()
    assert ok and first.shape == (360, 640, 3)
    assert np.abs(first.astype(int) - original).max(axis=2).__gt__(60).sum() > 500  # the glasses are drawn


def test_cli_a_phone_video_stored_sideways_comes_out_upright(examples, tmp_path):
    """A portrait video a phone stored sideways (landscape, with a display rotation): the faces were
    looked for on their side and the output was written sideways, a landscape video of a portrait."""
    photo = cv2.imread(str(examples / "examples" / "obama-720p.jpg"))
    portrait = cv2.resize(photo[:, 480:880], (360, 640))  # 360 wide, 640 high, as a player shows it
    clip = sideways([np.roll(portrait, 3 * i, axis=0) for i in range(6)], tmp_path / "phone.mp4")
    out = tmp_path / "out.mp4"
    result = runner.invoke(app, ["ar", str(clip), "-e", "glasses", "--output", str(out), "-q", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 6 and summary["most_faces"] == 1
    capture = cv2.VideoCapture(str(out))
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)  # the file as stored: upright needs no rotation flag
    ok, first = capture.read()
    capture.release()
    assert ok and first.shape == (640, 360, 3)
    assert np.abs(first.astype(int) - portrait).mean() < 20  # the picture upright, glasses drawn on it


def test_cli_names_an_unknown_effect(tmp_path):
    result = runner.invoke(app, ["ar", str(tmp_path / "none.mp4"), "--effect", "sparkles"])
    assert result.exit_code == 2
    assert "unknown_effect" in result.output and "sparkles" in result.output


def test_cli_draws_a_png_sticker(examples, tmp_path):
    clip, out, png = tmp_path / "in.mp4", tmp_path / "out.mp4", tmp_path / "star.png"
    _clip(examples, clip, frames=3)
    sticker = np.zeros((80, 160, 4), np.uint8)
    sticker[20:60, 10:150] = (255, 0, 255, 255)  # an opaque magenta band in a transparent frame
    assert cv2.imwrite(str(png), sticker)
    result = runner.invoke(app, ["ar", str(clip), "--sticker", str(png), "--sticker-on", "eyes", "--sticker-anchors",
                                 "10,40,150,40", "--output", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["frames"] == 3
    capture = cv2.VideoCapture(str(out))
    ok, first = capture.read()
    capture.release()
    assert ok
    magenta = (first[..., 0] > 180) & (first[..., 1] < 90) & (first[..., 2] > 180)
    assert magenta.sum() > 300


def test_cli_refuses_a_png_without_alpha(tmp_path):
    png = tmp_path / "flat.png"
    assert cv2.imwrite(str(png), np.full((40, 80, 3), 200, np.uint8))
    result = runner.invoke(app, ["ar", str(tmp_path / "none.mp4"), "--sticker", str(png)])
    assert result.exit_code == 2
    assert "validation_error" in result.output and "no alpha channel" in result.output
    nothing = runner.invoke(app, ["ar", str(tmp_path / "none.mp4")])
    assert nothing.exit_code == 2 and "--effect or a --sticker" in nothing.output


def test_cli_json_prints_the_summary_and_errors_as_json(shared: Path, tmp_path: Path) -> None:
    """`ar --json`: the summary on stdout as without it, and an error as one JSON object there too (as `drive`)."""
    video = shared / "data/videos/driver_night_cabin.mp4"
    result = runner.invoke(app, ["ar", str(video), "-e", "glasses", "--max-frames", "2", "--json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 2 and summary["most_faces"] == 1
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n")
    failed = runner.invoke(app, ["ar", str(text), "-e", "glasses", "--json", "-q"])
    assert failed.exit_code == 2, failed.output
    lines = failed.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["error"] == "bad_request" and "text.mp4" in lines[0]


def test_cli_refuses_an_output_that_is_the_source(shared: Path, tmp_path: Path) -> None:
    """`ar in.mp4 -o in.mp4` replaced the input by the few frames it wrote, and exited 0."""
    clip = tmp_path / "in.mp4"
    clip.write_bytes((shared / "data/videos/driver_night_cabin.mp4").read_bytes())
    original = clip.read_bytes()
    (tmp_path / "link.mp4").symlink_to(clip)
    for output, as_json in ((clip, False), (tmp_path / "link.mp4", True)):
        result = runner.invoke(app, ["ar", str(clip), "-e", "glasses", "-q", "--max-frames", "2", "-o", str(output),
                                     *(["--json"] if as_json else [])])
        assert result.exit_code == 2, result.output
        said = result.stdout if as_json else result.stderr
        assert len(said.strip().splitlines()) == 1 and "is the source video" in said, result.output
        assert clip.read_bytes() == original


def test_cli_refuses_an_output_name_that_is_not_utf8(shared: Path, tmp_path: Path) -> None:
    """OpenCV's writer crashed the process (exit 139) on a file name with bytes that are not UTF-8."""
    video = shared / "data/videos/driver_night_cabin.mp4"
    run = subprocess.run([sys.executable, "-m", "faceatlas.cli", "ar", str(video), "-e", "hat", "-q", "--max-frames",
                          "2", "-o", os.fsencode(tmp_path) + b"/o\xff.mp4"], capture_output=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert b"error (validation_error)" in run.stderr and b"UTF-8" in run.stderr
    assert os.listdir(tmp_path) == []


def test_cli_ctrl_c_on_a_file_keeps_the_video_and_says_it_was_interrupted(shared: Path, tmp_path: Path) -> None:
    """Ctrl-C ended a file's run with no summary at all; the video it wrote is whole for the frames done."""
    from tests.clips import interrupted_run

    output = tmp_path / "out.mp4"
    run = interrupted_run(["ar", str(shared / "data/videos/driver_night_cabin.mp4"), "-e", "glasses", "-q", "--json",
                           "-o", str(output)], output)
    assert run.returncode == 130, run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["interrupted"] is True and 0 < summary["frames"] < 1501
    written = cv2.VideoCapture(str(output)).get(cv2.CAP_PROP_FRAME_COUNT)  # a valid video: the frames done
    assert abs(written - summary["frames"]) <= 1  # Ctrl-C may land between a frame's analysis and its writing


def test_cli_names_an_output_that_cannot_be_written_with_its_code(examples, tmp_path, monkeypatch) -> None:
    """-o /proc/x.mp4 failed at the first frame as `error (error): ... could not open the video for
    writing`, the generic code; it is refused before the run as bad_request naming the output, and
    a writer that fails later (the check skipped here) names the output too."""
    clip = tmp_path / "in.mp4"
    _clip(examples, clip, frames=2)
    result = runner.invoke(app, ["ar", str(clip), "-e", "glasses", "-o", "/proc/x.mp4", "-q", "--json"])
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout.strip().splitlines()[-1])
    assert error["error"] == "bad_request" and "output /proc/x.mp4 cannot be written" in error["message"], error
    monkeypatch.setattr("faceatlas.apps.ar.run.prepare_output_file", lambda *args, **kwargs: None)
    result = runner.invoke(app, ["ar", str(clip), "-e", "glasses", "-o", "/proc/x.mp4", "-q", "--json"])
    error = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.exit_code == 2 and error["error"] == "bad_request", result.output
    assert error["message"].startswith("cannot write the output video: /proc/x.mp4"), error


def test_cli_a_video_write_that_fails_mid_run_is_an_error_not_a_summary(shared: Path, tmp_path: Path) -> None:
    """A disk that fills up during the run (no file past 48 KiB here; the first frames fit): OpenCV's
    writer only logged "Failed to write frame", the summary was printed, exit 0, and the file was
    cut short and played nowhere."""
    from tests.full_disk import run_cli_on_a_full_disk

    video, output = shared / "data/videos/driver_night_cabin.mp4", tmp_path / "big.mp4"
    run = run_cli_on_a_full_disk(["ar", video, "-e", "glasses", "-o", output, "-q", "--max-frames", "12"], 48 * 1024)
    assert run.returncode == 2, run.stderr[-2000:]
    assert f"error (bad_request): cannot write the output video: {output}: file too large" in run.stderr
    assert "Failed to write frame" not in run.stderr and "frames" not in run.stdout, run.stdout


def test_cli_a_video_cut_short_by_a_failed_write_is_removed(shared: Path, tmp_path: Path) -> None:
    """`(ulimit -f 200; faceatlas ar ... -o a.mp4)` said what failed, but a.mp4 stayed, cut short: a
    file that plays nowhere. It is removed, and the message says so (a run stopped by Ctrl-C keeps
    its video: closed, it plays)."""
    from tests.full_disk import run_cli_on_a_full_disk

    video, output = shared / "data/videos/driver_night_cabin.mp4", tmp_path / "a.mp4"
    run = run_cli_on_a_full_disk(["ar", video, "-e", "glasses", "-q", "--max-frames", "300", "-o", output], 200 * 1024)
    assert run.returncode == 2, run.stderr[-2000:]
    said = f"error (bad_request): cannot write the output video: {output}: file too large"
    assert run.stderr.strip().splitlines() == [f"{said} (the partial output was removed)"]
    assert not output.exists()


def test_cli_a_run_that_fails_leaves_no_folder_it_made(tmp_path: Path) -> None:
    """`ar /nonexist.mp4 -e glasses -o n1/a/x.mp4` exited 2 and left n1/a, made for the output before
    the source was opened; a folder that was there stays."""
    (tmp_path / "kept").mkdir()
    for output in (tmp_path / "n1" / "a" / "x.mp4", tmp_path / "kept" / "b" / "x.mp4"):
        result = runner.invoke(app, ["ar", str(tmp_path / "none.mp4"), "-e", "glasses", "-q", "-o", str(output)])
        assert result.exit_code == 2 and "error (file_not_found): video source" in result.output, result.output
    assert os.listdir(tmp_path) == ["kept"] and os.listdir(tmp_path / "kept") == []


def test_cli_refuses_anchors_outside_the_sticker_and_empty_paths(tmp_path):
    """`--sticker-anchors 0,50,9999,50` on a 200-pixel-wide PNG drew the sticker where no one saw it,
    exit 0; `-o ''` (an unset shell variable) was the current folder: ".: cannot write a video with
    suffix '(none)'"."""
    png = tmp_path / "crown.png"
    crown = np.zeros((100, 200, 4), np.uint8)
    crown[30:70] = (0, 200, 255, 255)
    assert cv2.imwrite(str(png), crown)
    source = str(tmp_path / "none.mp4")  # never opened: each is refused before
    result = runner.invoke(app, ["ar", source, "--sticker", str(png), "--sticker-anchors", "0,50,9999,50"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "validation_error" in result.output and "two pixels of its 200x100 image" in result.output
    for args, says in ((["-e", "glasses", "-o", ""], "--output is empty: give a file"),
                       (["--sticker", ""], "--sticker is empty: give a file")):
        result = runner.invoke(app, ["ar", source, *args, "--json"])
        assert result.exit_code == 2, result.output
        error = json.loads(result.stdout.strip())
        assert error["error"] == "validation_error" and error["message"].startswith(says), error


def test_cli_quiet_prints_nothing_on_stderr(shared: Path, tmp_path: Path) -> None:
    """`-q` still printed MediaPipe's start-up lines (Face Mesh's and the selfie segmenter's) and
    protobuf's "UserWarning: SymbolDatabase.GetPrototype() is deprecated"."""
    video = shared / "data/videos/driver_night_cabin.mp4"
    run = subprocess.run([sys.executable, "-m", "faceatlas.cli", "ar", str(video), "-e", "glasses", "-e",
                          "blur-background", "-q", "--max-frames", "2", "-o", str(tmp_path / "out.mp4")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr == ""
    assert json.loads(run.stdout.strip().splitlines()[-1])["frames"] == 2


def test_cli_without_output_says_that_nothing_is_written(shared: Path) -> None:
    """`ar clip.mp4 --effect glasses` without --output applied the effects and wrote nothing, with no
    word of it; a one-line note on stderr says so (the summary stays on stdout)."""
    video = shared / "data/videos/driver_night_cabin.mp4"
    result = runner.invoke(app, ["ar", str(video), "-e", "glasses", "--max-frames", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == ("note: no --output: the effects are applied and counted, no video is written "
                                     "(give --output out.mp4 to keep it)"), result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["frames"] == 2


def test_a_source_that_is_no_video_is_named_once_without_ffmpegs_error_number(tmp_path):
    """`ar empty.mp4` and `drive empty.mp4` (zero bytes, or text) said "cannot read video source
    'empty.mp4': cannot open video source 'empty.mp4': [Errno 1094995529] Invalid data found when
    processing input: 'empty.mp4'". Now the source once and FFmpeg's reason."""
    for name, body in (("empty.mp4", b""), ("notes.mp4", b"not a video at all\n" * 20)):
        source = tmp_path / name
        source.write_bytes(body)
        for command in (["ar", str(source), "-e", "hat", "-q"], ["drive", str(source), "-q"]):
            result = runner.invoke(app, command)
            said = " ".join(result.output.split())
            assert result.exit_code == 2 and "Errno" not in said and said.count(name) == 1, (command, said)
            assert f"cannot read video source '{source}': cannot open it: " in said, said
