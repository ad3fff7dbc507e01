"""The stored events read back from a time: ``since`` parsed as a time (offsets converted to UTC, a time
without one is UTC, anything else refused, as the counts' bounds), not compared as text."""

from __future__ import annotations

import pytest

from faceatlas.errors import InvalidArgument
from faceatlas.video.events import Event
from faceatlas.video.sinks import DatabaseSink
from faceatlas.video.store import list_events, open_events_db

STORED = {  # frame: wall time, as the pipeline writes it (UTC, milliseconds) and as retail's clock does (none)
    1: "2026-12-04T10:00:00.000+00:00",
    2: "2026-12-04T10:01:00+00:00",
    3: "2026-12-04T10:01:30.500+00:00",
    4: "2026-12-04T10:02:00.000+00:00",
}


@pytest.fixture
def database(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    sink = DatabaseSink(url)
    for frame, wall_time in STORED.items():
        sink.emit(Event("line_crossed", "gate", frame, float(frame), data={}, wall_time=wall_time))
    sink.close()
    return url


def _frames(database: str, since: str) -> list[int]:
    engine = open_events_db(database)
    try:
        return sorted(event.frame for event in list_events(engine, "default", since=since))
    finally:
        engine.dispose()


@pytest.mark.parametrize(("since", "expected"), [
    ("2026-12-04T11:01+01:00", [2, 3, 4]),  # 10:01 UTC (as text it was after every event)
    ("2026-12-04T09:01-01:00", [2, 3, 4]),
    ("2026-12-04T10:01Z", [2, 3, 4]),  # as text 'Z' sorted after ':' and left out 10:01:00 and 10:01:30
    ("2026-12-04T10:01", [2, 3, 4]),
    ("2026-12-04T10:01:00.000+00:00", [2, 3, 4]),  # an event's own wall time finds it (the console's feed)
    ("2026-12-04 10:01", [2, 3, 4]),  # a space for the T (as text it was before every event)
    ("2026-12-04T10:01:30.5", [3, 4]),
    ("2026-12-04T10:01:30.500001", [4]),
    ("2026-12-04T10:01:00.001", [3, 4]),
    ("2026-12-04", [1, 2, 3, 4]),  # a date: its midnight
    ("2026-12-05", []),
])
def test_since_is_a_time_with_its_offset(database, since, expected):
    assert _frames(database, since) == expected


@pytest.mark.parametrize("bad", ["garbage", "", "2026-13-01T10:00", "10:01", "2026-12-04T10:01 UTC", "x\x00"])
def test_a_since_that_is_not_iso_8601_is_refused(database, bad):
    with pytest.raises(InvalidArgument, match="ISO 8601"):
        _frames(database, bad)


@pytest.mark.parametrize("far", ["0001-01-01T00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_since_that_utc_cannot_hold_is_out_of_range_not_no_iso_8601(database, far):
    """Valid ISO 8601 whose UTC time is before year 1 or after 9999 was "is not an ISO 8601 time"."""
    with pytest.raises(InvalidArgument, match="since is out of range") as refused:
        _frames(database, far)
    assert "not an ISO 8601" not in str(refused.value)


def test_a_locked_database_keeps_events_waiting_and_counts_what_it_never_took(tmp_path, caplog) -> None:
    """An SQLite file held locked by another process: each emit raised (the bus counted every try as
    an event lost, though the events were kept and written later), each try stalled the cameras
    30 s, and events still waiting at close were lost with no count."""
    import sqlite3
    import time

    from faceatlas.video import EventBus

    path = tmp_path / "events.db"
    url = f"sqlite:///{path}"
    sink = DatabaseSink(url, batch=1, busy_s=0.2)
    bus = EventBus([sink])
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    for frame in range(1, 4):
        bus.emit(Event("line_crossed", "gate", frame, float(frame), data={}))
    assert time.monotonic() - started < 10  # one try of 0.2 s, then a backoff: not a 30 s stall per event
    assert bus.failed == {} and bus.undelivered() == {"DatabaseSink": 3}
    holder.execute("COMMIT")
    time.sleep(1.1)  # past the first retry delay
    bus.emit(Event("line_crossed", "gate", 4, 4.0, data={}))
    assert bus.undelivered() == {"DatabaseSink": 0}
    assert _frames(url, "2026-01-01T00:00:00") == [1, 2, 3, 4]
    holder.execute("BEGIN EXCLUSIVE")  # locked at the end: what waits is counted, not lost unsaid
    bus.emit(Event("line_crossed", "gate", 5, 5.0, data={}))
    bus.close()
    holder.execute("COMMIT")
    holder.close()
    assert bus.undelivered() == {"DatabaseSink": 1}
    assert "1 events not written to the event database" in caplog.text


def test_erasing_a_tenant_keeps_a_snapshot_file_another_tenants_event_names(tmp_path):
    """Runs of one camera by two tenants into one snapshots folder wrote one file
    (``<camera>_<frame>_<track>_<type>.jpg``, the name before it held the event's id) that an event of
    each names: erasing tenant beta deleted it under acme's event (acme's snapshot was then
    not_found). The file stays while another tenant's event names it; beta's own file goes."""
    from pathlib import Path

    from faceatlas.video.store import erase_tenant_events, event_snapshot

    shared, own = tmp_path / "door_0000010_1_identified.jpg", tmp_path / "door_0000012_2_identified.jpg"
    shared.write_bytes(b"\xff\xd8acme's frame, then beta's")
    own.write_bytes(b"\xff\xd8beta's own frame")
    url = f"sqlite:///{tmp_path / 'events.db'}"
    acme = Event("identified", "door", 10, 0.4, 1, "face", {"snapshot": str(shared)})
    for tenant, events in (("acme", [acme]), ("beta", [
            Event("identified", "door", 10, 0.4, 1, "face", {"snapshot": str(shared)}),
            Event("identified", "door", 12, 0.5, 2, "face", {"snapshot": str(own)})])):
        sink = DatabaseSink(url, tenant=tenant)
        for event in events:
            sink.emit(event)
        sink.close()
    engine = open_events_db(url)
    assert erase_tenant_events(engine, "beta") == 2
    assert not own.exists() and list_events(engine, "beta") == []
    assert event_snapshot(engine, "acme", acme.id) == shared.read_bytes()
    assert erase_tenant_events(engine, "acme") == 1 and not Path(shared).exists()  # no one names it now
    engine.dispose()


@pytest.mark.parametrize("limit", [0, -1, 1001, 2**63 - 1])
def test_a_limit_outside_a_page_is_refused(database, limit):
    """A negative limit was every stored event (SQLite reads ``LIMIT -1`` as no limit), 0 an empty
    answer and 2**63-1 an overflow: the page is 1 to the gallery's PAGE_MAX, as every listing's."""
    engine = open_events_db(database)
    try:
        with pytest.raises(InvalidArgument, match="limit"):
            list_events(engine, "default", limit=limit)
        assert len(list_events(engine, "default", limit=1)) == 1
    finally:
        engine.dispose()


def test_a_camera_filter_finds_its_events_by_either_form_of_its_name(tmp_path):
    """A camera's name is kept composed (NFC): a filter typed with a combining accent finds its
    events (and one kept before in another form is found by the composed name too)."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    sink = DatabaseSink(url)
    sink.emit(Event("line_crossed", "Jos\u00e9", 1, 1.0, data={}))
    sink.emit(Event("line_crossed", "Rene\u0301", 2, 2.0, data={}))  # stored before names were composed
    sink.close()
    engine = open_events_db(url)
    try:
        for name, frame in (("Jose\u0301", 1), ("Jos\u00e9", 1), ("Rene\u0301", 2), ("Ren\u00e9", 2)):
            assert [event.frame for event in list_events(engine, "default", camera=name)] == [frame], name
    finally:
        engine.dispose()
