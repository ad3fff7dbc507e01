"""Stored video events and the face snapshots they kept are deleted once older than
``FACEATLAS_EVENT_RETENTION_DAYS``: they were kept for ever (22,000 snapshot files a day per camera),
by the video layer's ``purge_events`` and by the server's retention sweep, which runs it at the
start and every period, and by `watch` over its own events database (a camera box with no `serve`
kept them for ever). A snapshot file that a kept event names too is kept."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from faceatlas.db import create_database_engine
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import ServiceSettings
from faceatlas.video import DatabaseSink, Event, list_events, purge_events
from faceatlas.video import retention as video_retention
from faceatlas.video.retention import EventRetention


def _seed(url: str, folder: Path, photo: Path) -> dict[str, Path]:
    """Two old events (one snapshot of its own, one shared with a recent event) and a recent one."""
    shots = {name: folder / f"{name}.jpg" for name in ("old", "shared")}
    for path in shots.values():
        assert cv2.imwrite(str(path), cv2.imread(str(photo)))
    old = (datetime.now(UTC) - timedelta(days=10)).isoformat(timespec="milliseconds")
    sink = DatabaseSink(url, tenant="acme")
    sink.emit(Event("identified", "door", 1, 0.1, 1, "face", {"subject": "lmm", "snapshot": str(shots["old"])},
                    wall_time=old))
    sink.emit(Event("watchlist_hit", "door", 2, 0.2, 1, "face", {"subject": "lmm", "snapshot": str(shots["shared"])},
                    wall_time=old))
    sink.emit(Event("watchlist_hit", "door", 3, 0.3, 2, "face", {"subject": "obama", "snapshot": str(shots["shared"])}))
    sink.close()
    return shots


def test_events_older_than_the_retention_go_with_their_snapshots(examples: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    shots = _seed(url, tmp_path, examples / "examples" / "lin-manuel-miranda.png")
    engine = create_database_engine(url)
    assert purge_events(engine, datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30)) == 0
    ended = threading.Event()
    ended.set()  # a watch run that ends stops its sweep between two chunks (it waited for the whole backlog)
    assert purge_events(engine, datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1), stop=ended) == 0
    assert len(list_events(engine, "acme")) == 3
    assert purge_events(engine, datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1), chunk=1) == 2
    assert [e.data["subject"] for e in list_events(engine, "acme")] == ["obama"]
    assert not shots["old"].exists() and shots["shared"].exists()  # the recent event's picture stays
    assert purge_events(create_database_engine(f"sqlite:///{tmp_path / 'none.db'}"), datetime.now()) == 0
    engine.dispose()


def test_the_server_s_retention_sweep_deletes_the_old_events(examples: Path, tmp_path: Path, fast_analyzer) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = create_database_engine(url)
    migrate(engine)
    Accounts(engine).create_tenant("acme")
    shots = _seed(url, tmp_path, examples / "examples" / "lin-manuel-miranda.png")
    settings = ServiceSettings(database_url=url, index_dir=tmp_path / "indexes", pack="scrfd-mbf", workers=1,
                               event_retention_days=7)
    with TestClient(create_app(settings, analyzer=fast_analyzer)):  # the sweep runs once at the start
        assert [e.data["subject"] for e in list_events(engine, "acme")] == ["obama"]
        assert not shots["old"].exists() and shots["shared"].exists()
    engine.dispose()


def _short_clip(source: Path, clip: Path, frames: int = 9) -> Path:
    """The first ``frames`` frames of ``source`` (a 640x360 clip at 30 fps), re-encoded into ``clip``."""
    capture = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 30, (640, 360))
    for _ in range(frames):
        writer.write(capture.read()[1])
    writer.release()
    capture.release()
    return clip


def test_watch_deletes_the_old_events_of_its_database(examples: Path, hamilton: Path, tmp_path: Path, db_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the server swept the events: `watch` on a camera box with no `serve` kept them (and a
    face snapshot per event) for ever. Unset, they are kept; set, the run deletes those older than
    the retention from its events database at its start, with their files, and says how many."""
    from faceatlas.cli.main import app

    shots = _seed(db_url, tmp_path, examples / "examples" / "lin-manuel-miranda.png")
    clip = _short_clip(hamilton, tmp_path / "singer.mp4")
    (tmp_path / "cams.yaml").write_text(f"database: '{db_url}'\n"
                                        f"cameras:\n  - {{name: stage, source: {clip}, stride: 3, persons: false}}\n")
    watch = ["watch", "--config", str(tmp_path / "cams.yaml"), "-p", "scrfd-mbf"]
    engine = create_database_engine(db_url)
    try:
        kept = CliRunner().invoke(app, watch)  # no retention set: everything stays, as before
        assert kept.exit_code == 0, kept.output
        assert len(list_events(engine, "acme")) == 3 and shots["old"].exists() and "deleted" not in kept.output

        monkeypatch.setenv("FACEATLAS_EVENT_RETENTION_DAYS", "7")
        monkeypatch.setenv("FACEATLAS_WORKERS", "0")  # a server's setting out of its rules: no concern of watch's
        swept = CliRunner().invoke(app, watch)
        assert swept.exit_code == 0, swept.output
        assert [e.data["subject"] for e in list_events(engine, "acme")] == ["obama"]
        assert not shots["old"].exists() and shots["shared"].exists()  # the recent event's picture stays
        assert "deleted 2 stored events older than 7 days" in swept.output, swept.output
    finally:
        engine.dispose()


def test_a_failed_sweep_is_logged_and_tried_again_at_the_next_period(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The database locked or gone: the run goes on, and the next period deletes what the failed one did not."""
    calls: list[datetime] = []
    done = threading.Event()

    def purge(engine: object, before: datetime, stop: threading.Event | None = None) -> int:
        calls.append(before)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        done.set()
        return 4

    monkeypatch.setattr(video_retention, "purge_events", purge)
    sweep = EventRetention(f"sqlite:///{tmp_path / 'events.db'}", days=1.5, period=0.05)
    with caplog.at_level(logging.INFO, logger="faceatlas.video.retention"):
        sweep.start()
        assert done.wait(10)
        removed = sweep.close()
    assert removed >= 4 and len(calls) >= 2
    assert abs((datetime.now(UTC).replace(tzinfo=None) - calls[0]) - timedelta(days=1.5)) < timedelta(minutes=1)
    assert "retrying in 0.05s" in caplog.text and "deleted 4 video events older than 1.5 days" in caplog.text
