"""Every time the command line prints as JSON that the server's clock made is UTC with its offset,
as the API's are (tests/service/test_api_times.py); a photo's EXIF date, the camera's local time,
stays without one."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from faceatlas.cli.main import app

runner = CliRunner()


def _utc(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() == timedelta(0) and text.endswith("+00:00"), text
    return parsed


def _json(args: list[str]) -> dict | list:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_gallery_and_album_json_times_are_utc_with_an_offset(tmp_path: Path, shared: Path) -> None:
    """`gallery create/list/subjects --json` and an album's photos printed naive times
    ("2026-12-08T00:14:58.886225"): a script in another time zone read them as its own."""
    photo = shared / "data" / "face_recognition_examples" / "examples" / "obama_small.jpg"
    db = str(tmp_path / "g.db")
    before = datetime.now(UTC) - timedelta(seconds=5)
    created = _json(["gallery", "create", "staff", "-p", "scrfd-mbf", "--db", db])
    assert runner.invoke(app, ["gallery", "enrol", "staff", str(photo), "-s", "obama", "--db", db]).exit_code == 0
    listed = _json(["gallery", "list", "--db", db])
    subjects = _json(["gallery", "list", "staff", "--db", db])["items"]
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(photo, photos / "obama.jpg")
    album_db = f"sqlite:///{tmp_path / 'a.db'}"
    assert runner.invoke(app, ["album", "scan", str(photos), "--pack", "scrfd-mbf", "--db", album_db]).exit_code == 0
    person = _json(["album", "people", "--db", album_db])[0]["id"]
    timeline = _json(["album", "timeline", person, "--db", album_db])
    times = [created["created_at"], listed[0]["created_at"], subjects[0]["created_at"], subjects[0]["updated_at"],
             *(p["added_at"] for p in timeline)]
    assert len(times) == 5, times
    for text in times:
        assert before <= _utc(text) <= datetime.now(UTC) + timedelta(seconds=5), text
    assert timeline[0]["taken_at"] is None or "+" not in timeline[0]["taken_at"][10:]
