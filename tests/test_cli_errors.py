"""What a new user trips on: every failing command is one clear line on stderr and a non-zero exit."""

from __future__ import annotations

from typer.testing import CliRunner

from faceatlas.cli.main import app

runner = CliRunner()


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error")]


def test_watch_missing_file_is_one_line_and_non_zero(shared, tmp_path):
    result = runner.invoke(app, ["watch", str(tmp_path / "nosuch.mp4"), "--events", str(tmp_path / "ev.jsonl")])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert len(_error_lines(result.output)) == 1 and "nosuch.mp4" in _error_lines(result.output)[0]
    assert not (tmp_path / "ev.jsonl").exists()


def test_watch_unknown_collection_is_one_line_and_non_zero(shared, tmp_path):
    video = shared / "data/videos/one-by-one-person-detection.mp4"
    result = runner.invoke(app, ["watch", str(video), "--collection", "nosuch",
                                 "--gallery", f"sqlite:///{tmp_path / 'g.db'}"])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = _error_lines(result.output)
    assert len(lines) == 1 and "not_found" in lines[0] and "nosuch" in lines[0], result.output


def test_watch_file_that_is_no_video_is_one_line_and_non_zero(shared, tmp_path):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    result = runner.invoke(app, ["watch", str(not_a_video), "-p", "scrfd-mbf", "--no-persons"])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = _error_lines(result.output)
    assert len(lines) == 1 and "notes.mp4" in lines[0], result.output
