"""One rule for the video tables' database: `watch` stores events and per-minute counts in cams.yaml's
`database:`, else in the settings' database (FACEATLAS_DATABASE_URL, else the default file), and
`counts` reads `--db`, else that same settings' database (as `serve` lists them at GET /v1/events).
`counts` required --db (the README's `faceatlas counts CAMERA --plot counts.png --heatmap heat.png`
was a usage error), and `watch` without `database:` stored nothing, FACEATLAS_DATABASE_URL or not."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
from typer.testing import CliRunner

from faceatlas.cli.main import app
from faceatlas.video.events import Event
from faceatlas.video.sinks import DatabaseSink
from faceatlas.video.store import list_events, open_events_db

REPO = Path(__file__).resolve().parents[2]


def _readme_counts(camera: str, folder: Path) -> list[str]:
    """The README's `faceatlas counts CAMERA ...` command (smart city section), for ``camera``, its
    charts written in ``folder``."""
    text = " ".join((REPO / "README.md").read_text().split())
    command = shlex.split(re.search(r"`(faceatlas counts CAMERA [^`]*)`", text).group(1))  # type: ignore[union-attr]
    assert command[:3] == ["faceatlas", "counts", "CAMERA"] and "--db" not in command, command
    return ["counts", camera, *(str(folder / arg) if arg.endswith(".png") else arg for arg in command[3:])]


def test_counts_reads_the_settings_database_without_db(tmp_path, monkeypatch):
    """No --db: FACEATLAS_DATABASE_URL; neither: the default file (under HOME); --db still wins."""
    monkeypatch.delenv("FACEATLAS_DATABASE_URL")  # set by the folder's fixture
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default = tmp_path / "home" / ".local" / "share" / "faceatlas" / "faceatlas.db"
    default.parent.mkdir(parents=True)
    for url, seen in ((f"sqlite:///{default}", 3), (f"sqlite:///{tmp_path / 'env.db'}", 5),
                      (f"sqlite:///{tmp_path / 'other.db'}", 7)):
        sink = DatabaseSink(url)
        sink.emit(Event("counts", "gate", 1, 1.0, data={"minute": "2026-12-04T10:00", "frame_size": [8, 8],
                                                         "classes": {"car": {"seen": seen}}}))
        sink.close()
    runner = CliRunner(env={"COLUMNS": "200"})
    assert "seen 3" in (result := runner.invoke(app, ["counts", "gate"])).output, result.output
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert "seen 5" in (result := runner.invoke(app, ["counts", "gate"])).output, result.output
    other = runner.invoke(app, ["counts", "gate", "--db", f"sqlite:///{tmp_path / 'other.db'}"])
    assert other.exit_code == 0 and "seen 7" in other.output, other.output


def test_watch_without_database_stores_in_the_settings_database_and_the_readme_counts_reads_it(
        pedestrians, tmp_path, monkeypatch):
    """cams.yaml without `database:`, FACEATLAS_DATABASE_URL exported: the events and counts are in
    it, and the README's counts command, as written (no --db), draws both charts from them."""
    clip = tmp_path / "walk.mp4"
    capture = cv2.VideoCapture(str(pedestrians))
    ok, frame = capture.read()
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10, (frame.shape[1], frame.shape[0]))
    for _ in range(24):
        writer.write(frame)
        ok, frame = capture.read()
    writer.release()
    capture.release()
    (tmp_path / "cams.yaml").write_text(f"cameras:\n  - {{name: street, source: {clip}, stride: 3, faces: false}}\n")
    url = f"sqlite:///{tmp_path / 'settings.db'}"
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    watched = CliRunner().invoke(app, ["watch", "--config", str(tmp_path / "cams.yaml"), "-p", "scrfd-mbf"])
    assert watched.exit_code == 0, watched.output
    engine = open_events_db(url)
    try:
        assert list_events(engine, "default", camera="street", type="track_started")
    finally:
        engine.dispose()
    assert f"events database: {url}" in watched.output  # the summary says where
    listed = CliRunner().invoke(app, ["counts", "street", "--class", "person"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "seen" in listed.output, listed.output
    result = CliRunner().invoke(app, _readme_counts("street", tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "counts.png").stat().st_size > 5000 and (tmp_path / "heat.png").stat().st_size > 5000


def test_watch_says_its_own_lines_not_alembics(pedestrians, tmp_path):
    """A gallery collection to recognise against: stderr had nine "INFO alembic.runtime.plugins: setup
    plugin ..." lines and two of Alembic's migration context before the first of FaceAtlas's own
    (`watch` set every logger to INFO); FaceAtlas's lines (the pack's licence) stay."""
    clip = tmp_path / "walk.mp4"
    capture = cv2.VideoCapture(str(pedestrians))
    ok, frame = capture.read()
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10, (frame.shape[1], frame.shape[0]))
    for _ in range(4):
        writer.write(frame)
    writer.release()
    capture.release()
    gallery = f"sqlite:///{tmp_path / 'gallery.db'}"
    made = CliRunner().invoke(app, ["gallery", "create", "staff", "--db", gallery, "-p", "scrfd-mbf"])
    assert made.exit_code == 0, made.output
    (tmp_path / "cams.yaml").write_text(f"database: sqlite:///{tmp_path / 'events.db'}\ngallery: {gallery}\n"
                                        f"collection: staff\ncameras:\n  - {{name: street, source: {clip}}}\n")
    run = subprocess.run([sys.executable, "-m", "faceatlas.cli", "watch", "--config", str(tmp_path / "cams.yaml"),
                          "-p", "scrfd-mbf"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "alembic" not in run.stderr, run.stderr[-2000:]
    assert " faceatlas: model pack 'scrfd-mbf'" in run.stderr, run.stderr[-2000:]
