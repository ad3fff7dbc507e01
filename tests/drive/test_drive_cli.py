"""`faceatlas drive` as a user runs it, on the real night-cabin clip: what it refuses, and how it
says so (one line, or one JSON object on stdout with --json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("mediapipe")

from faceatlas.cli.main import app

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
