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

import pytest
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


@pytest.mark.parametrize("keeps_ids", [False, True])
def test_the_delete_dialog_promises_what_the_audit_setting_does(fast_analyzer, examples, tmp_path,
                                                                keeps_ids) -> None:
    """The dialog (and the page's note) said the subject's id is removed from the audit trail, also
    where FACEATLAS_AUDIT_KEEPS_SUBJECT_IDS=1 keeps it; the page that asks first said it right. Both
    now word the same sentence."""
    with _console(fast_analyzer, tmp_path, audit_keeps_subject_ids=keeps_ids) as console:
        client, csrf = console.client, console.csrf
        assert client.post("/console/galleries", data={"name": "staff", "csrf": csrf}).status_code == 200
        enrolled = client.post("/console/galleries/staff/enrol", data={"subject": "obama", "csrf": csrf},
                               files=[("photos", _upload(examples / "tests/test_images/obama.jpg"))])
        assert "obama.jpg: enrolled 1 face" in _text(enrolled.text)
        page = client.get("/console/galleries/staff").text
        form = re.search(r'action="/console/galleries/staff/subjects/obama/delete"[^>]*data-confirm="([^"]+)"', page)
        dialog = html.unescape(form.group(1))
        asked = client.post("/console/galleries/staff/subjects/obama/delete", data={"csrf": csrf})
        question = html.unescape(re.search(r'<p id="question">([^<]+)</p>', asked.text).group(1))
        note = _text(re.search(r'<p class="help" id="erasure-note">(.+?)</p>', page, re.S).group(1))
    assert dialog == question  # one sentence for the dialog and the page that asks first
    assert ("its id stays in the audit trail" in dialog) is keeps_ids
    assert ("its id is removed from the audit trail" in dialog) is not keeps_ids
    assert ("keeps its id in the audit trail" in note) is keeps_ids
    assert ("replaces its id in the audit trail by “[erased]”" in note) is not keeps_ids


def test_a_photo_of_two_people_says_its_largest_face_was_used(fast_analyzer, examples, tmp_path) -> None:
    """Enrol, search and liveness on a photo of two people said "enrolled 1 face", nothing, and
    "1 face found" (detect: 2): the subject silently took one of two people. They take the largest
    face, as the API does, and say so; compare of two people said "confidence: unknown"."""
    group, obama = examples / "examples/two_people.jpg", examples / "tests/test_images/obama.jpg"
    biden = examples / "tests/test_images/biden.jpg"
    with _console(fast_analyzer, tmp_path) as console:
        client, csrf = console.client, console.csrf
        client.post("/console/galleries", data={"name": "people", "csrf": csrf})
        enrolled = _text(client.post("/console/galleries/people/enrol", data={"subject": "pair", "csrf": csrf},
                                     files=[("photos", _upload(group)), ("photos", _upload(obama))]).text)
        searched = _text(client.post("/console/galleries/people/search", data={"csrf": csrf},
                                     files=[("photo", _upload(group))]).text)
        alone = _text(client.post("/console/galleries/people/search", data={"csrf": csrf},
                                  files=[("photo", _upload(obama))]).text)

        def tried(operation: str, *photos: Path) -> str:
            files = [(name, _upload(photo)) for name, photo in zip(("photo", "other"), photos)]
            answer = client.post("/console/try", data={"operation": operation, "csrf": csrf}, files=files)
            assert answer.status_code == 200, answer.text[-300:]
            return _text(re.search(r'<section class="card result" id="try-answer">(.+?)</section>', answer.text,
                                   re.S).group(1))

        detected, live, live_alone = tried("detect", group), tried("liveness", group), tried("liveness", obama)
        different = tried("compare", obama, biden)
        same = tried("compare", obama, examples / "tests/test_images/obama2.jpg")
        with_group = tried("compare", obama, group)
    assert "two_people.jpg: enrolled the largest of 2 faces" in enrolled and "obama.jpg: enrolled 1 face" in enrolled
    assert "Searched the largest of 2 faces in the photo" in searched and "Searched the largest" not in alone
    assert detected.startswith("2 faces found")
    assert live.startswith("Liveness of the largest of 2 faces") and live.count("real") + live.count("spoof") == 1
    assert live_alone.startswith("1 face found")
    assert "Different people" in different and "unknown" not in different
    assert "confidence: not the same person at FAR 0.0001" in different
    assert "Same person" in same and "confidence: stronger than 1 in" in same
    assert "The second photo holds 2 faces: its largest was compared." in with_group and "holds" not in same


def test_try_detect_of_a_photo_without_a_face_answers_as_the_api(fast_analyzer, examples, tmp_path) -> None:
    """Try it's detect of a photo without a face was NoFace (a 422 error page, billed as a client
    error) where ``POST /v1/detect`` answers 200 with ``faces: []``, billed as a call of 0 faces.
    It answers "No face found" and is billed as the API bills it; liveness keeps the API's NoFace."""
    import cv2

    wall = tmp_path / "wall.png"  # a corner of the photo: wall, no face
    cv2.imwrite(str(wall), cv2.imread(str(examples / "examples/obama-720p.jpg"))[:160, :160])
    photo = ("wall.png", wall.read_bytes(), "image/png")
    with _console(fast_analyzer, tmp_path) as console:
        client, csrf = console.client, console.csrf
        accounts = Accounts(create_database_engine(console.database_url))

        def billed() -> tuple[int, int, int]:
            [row] = [r for r in accounts.usage_report("acme") if r["operation"] == "detect"]
            return row["calls"], row["faces"], row["errors"]

        tried = client.post("/console/try", data={"operation": "detect", "csrf": csrf}, files=[("photo", photo)])
        assert tried.status_code == 200, tried.text[-300:]
        answer = _text(re.search(r'<section class="card result" id="try-answer">(.+?)</section>', tried.text,
                                 re.S).group(1))
        by_console = billed()
        api = client.post("/v1/detect", headers={"Authorization": f"Bearer {console.key}"},
                          files={"image": photo})
        assert api.status_code == 200 and api.json()["faces"] == [], api.text
        by_both = billed()
        live = client.post("/console/try", data={"operation": "liveness", "csrf": csrf}, files=[("photo", photo)])
        accounts.engine.dispose()
    assert answer.startswith("No face found") and "0 faces" not in answer, answer
    assert by_console == (1, 0, 0) and by_both == (2, 0, 0)  # one call each, no face, no client error
    assert live.status_code == 422 and "no_face" in live.text


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


def test_every_series_of_a_chart_has_its_own_colour() -> None:
    """8 colours for 13 operations: the legend named several operations with one colour. Past the
    palette, the smallest series are one "other" series."""
    from faceatlas.service.console.draw import PALETTE, events_per_minute, usage_chart

    rows = [{"day": f"2026-03-0{d}", "operation": f"op{n:02d}", "calls": n + d} for n in range(13) for d in (1, 2)]
    chart = usage_chart(rows)
    colours = [colour for _, colour in chart.legend]
    assert len(colours) == 13 and len(set(colours)) == 13
    assert {bar.color for bar in chart.bars} == set(colours)
    many = [{"day": "2026-03-01", "operation": f"op{n:02d}", "calls": n + 1} for n in range(30)]
    folded = usage_chart(many)
    names = [name for name, _ in folded.legend]
    assert len(names) == len(PALETTE) and names[-1] == "other" and "op29" in names and "op00" not in names
    assert len({colour for _, colour in folded.legend}) == len(PALETTE)
    other = next(bar for bar in folded.bars if bar.title.startswith("2026-03-01 other:"))
    assert other.title.endswith(f": {sum(range(1, 12))} calls")  # op00..op10 summed
    assert folded.peak == sum(range(1, 31))
    events = [type("E", (), {"wall_time": "2026-03-01T10:00:00", "type": f"kind{n:02d}"})() for n in range(13)]
    assert len({colour for _, colour in events_per_minute(events).legend}) == 13
