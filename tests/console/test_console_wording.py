"""What the console says matches what it does: the delete dialog's promise about the audit trail
follows the server's setting, a photo of several people says which face was used, a compare of two
people is worded, and an event's snapshot is shown by its address, never by the server's file path.
In process (``TestClient``) over a fresh SQLite database: no browser needed for these."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from faceatlas.db import create_database_engine
from faceatlas.service.accounts import Accounts
from faceatlas.service.app import create_app
from faceatlas.service.db import migrate
from faceatlas.settings import ServiceSettings
from faceatlas.video import DatabaseSink, Event


@dataclass
class Console:
    client: TestClient
    csrf: str
    key: str
    database_url: str


@contextmanager
def _console(fast_analyzer, folder: Path, **settings: object) -> Iterator[Console]:
    """The app in this process with ``settings``, one tenant and a console session of its admin key."""
    url = f"sqlite:///{folder / 'service.db'}"
    engine = create_database_engine(url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    key = accounts.create_key("acme", ["admin"], rate_per_second=500, burst=500).token
    app = create_app(ServiceSettings(database_url=url, index_dir=folder / "indexes", pack="scrfd-mbf", workers=1,
                                     **settings), analyzer=fast_analyzer)
    with TestClient(app) as client:
        login = client.get("/console/login")
        token = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
        assert client.post("/console/login", data={"key": key, "csrf": token}).status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/galleries").text).group(1)
        yield Console(client, csrf, key, url)
    engine.dispose()


def _upload(path: Path) -> tuple[str, bytes, str]:
    return path.name, path.read_bytes(), "image/jpeg"


def _text(page: str) -> str:
    """A page's text, tags dropped and whitespace folded."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page))).strip()


def test_events_give_the_snapshot_address_not_the_servers_file_path(fast_analyzer, examples, tmp_path) -> None:
    """An event's data held {"snapshot": "/srv/.../door_..jpg"}, the operator's file path, and the
    API's event list and the console's events page showed it to the tenant. They give the frame's
    address; the snapshot routes still find the file."""
    frame = tmp_path / "kept" / "door_0000010_1_watchlist_hit.jpg"
    frame.parent.mkdir()
    frame.write_bytes((examples / "tests/test_images/obama.jpg").read_bytes())
    with _console(fast_analyzer, tmp_path) as console:
        sink = DatabaseSink(console.database_url, tenant="acme", batch=1)
        hit = Event("watchlist_hit", "door", 10, 0.4, 1, "face", {"subject": "vip", "snapshot": str(frame)})
        sink.emit(hit)
        sink.emit(Event("line_crossed", "door", 20, 0.8, 2, "person", {"direction": "in"}))
        sink.close()
        client = console.client
        answer = client.get("/v1/events", headers={"Authorization": f"Bearer {console.key}"})
        events = {e["id"]: e for e in answer.json()["events"]}
        shot = client.get(events[hit.id]["data"]["snapshot"], headers={"Authorization": f"Bearer {console.key}"})
        page = client.get("/console/events").text
        shown = client.get(f"/console/events/{hit.id}/snapshot")
    assert str(tmp_path) not in answer.text and "kept" not in answer.text
    assert events[hit.id]["data"] == {"subject": "vip", "snapshot": f"/v1/events/{hit.id}/snapshot"}
    assert "snapshot" not in next(e for e in events.values() if e["type"] == "line_crossed")["data"]
    assert shot.status_code == 200 and shot.content == frame.read_bytes()
    assert str(tmp_path) not in page and f'src="/console/events/{hit.id}/snapshot"' in page
    assert shown.status_code == 200 and shown.content == frame.read_bytes()
