"""Stored video events and the face snapshots they kept are deleted once older than
``FACEATLAS_EVENT_RETENTION_DAYS``: they were kept for ever (22,000 snapshot files a day per camera),
by the video layer's ``purge_events`` and by the server's retention sweep, which runs it at the
start and every period. A snapshot file that a kept event names too is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
from fastapi.testclient import TestClient

from faceatlas.db import create_database_engine
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import ServiceSettings
from faceatlas.video import DatabaseSink, Event, list_events, purge_events


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
