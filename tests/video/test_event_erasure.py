"""`faceatlas gallery delete` deletes the video events that name what it deletes, with their snapshot
files: in the plain setup `watch` stores them in the gallery's database (FACEATLAS_DATABASE_URL,
tenant ``default``), and deleting a subject left them there, its id, its name and its face
(``--events-db``: events that a cams.yaml ``database:`` put elsewhere)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cv2
from typer.testing import CliRunner

from faceatlas.cli.main import app
from faceatlas.video import DatabaseSink, Event, list_events, open_events_db


def _stored(url: str, tenant: str = "default") -> list[Event]:
    engine = open_events_db(url)
    try:
        return list_events(engine, tenant)
    finally:
        engine.dispose()


def _seed(url: str, folder: Path, photo: Path, tenant: str = "default") -> dict[str, Path]:
    """A watch run's events: ``lmm`` identified (snapshot), hit (a snapshot ``obama`` 's hit names
    too) and ended; ``obama`` identified and hit; a line crossing."""
    shots = {name: folder / f"{tenant}_{name}.jpg" for name in ("lmm", "shared", "obama")}
    for path in shots.values():
        assert cv2.imwrite(str(path), cv2.imread(str(photo)))
    lmm = {"subject": "lmm", "name": "Lin-Manuel Miranda", "similarity": 0.7, "far_level": None}
    sink = DatabaseSink(url, tenant=tenant)
    sink.emit(Event("identified", "door", 10, 0.4, 1, "face", {**lmm, "previous": None, "snapshot": str(shots["lmm"])}))
    sink.emit(Event("watchlist_hit", "door", 10, 0.4, 1, "face", {**lmm, "snapshot": str(shots["shared"])}))
    sink.emit(Event("track_ended", "door", 40, 1.6, 1, "face", {"dwell": 1.2, "subject": "lmm"}))
    sink.emit(Event("identified", "door", 50, 2.0, 2, "face", {"subject": "obama", "snapshot": str(shots["obama"])}))
    obama_hit = {"subject": "obama", "snapshot": str(shots["shared"])}
    sink.emit(Event("watchlist_hit", "door", 50, 2.0, 2, "face", obama_hit))
    sink.emit(Event("line_crossed", "door", 60, 2.4, 3, "person", {"direction": "in"}))
    sink.close()
    return shots


def _subjects(events: list[Event]) -> list[str | None]:
    return sorted((e.data.get("subject") or "-") for e in events)


def test_gallery_delete_erases_the_events_of_the_shared_database(events_database, examples, tmp_path):
    photo = examples / "examples" / "lin-manuel-miranda.png"
    runner = CliRunner()
    assert (done := runner.invoke(app, ["gallery", "create", "staff", "-p", "scrfd-mbf"])).exit_code == 0, done.output
    for subject, name in (("lmm", "Lin-Manuel Miranda"), ("obama", "Barack Obama")):
        image = photo if subject == "lmm" else examples / "tests" / "test_images" / "obama.jpg"
        done = runner.invoke(app, ["gallery", "enrol", "staff", str(image), "-s", subject, "--name", name])
        assert done.exit_code == 0, done.output
    shots = _seed(events_database, tmp_path, photo)
    assert _subjects(_stored(events_database)) == ["-", "lmm", "lmm", "lmm", "obama", "obama"]

    done = runner.invoke(app, ["gallery", "delete", "staff", "-s", "lmm", "-y"])
    assert done.exit_code == 0, done.output
    left = _stored(events_database)
    assert _subjects(left) == ["-", "obama", "obama"] and "Lin-Manuel" not in str([e.data for e in left])
    assert not shots["lmm"].exists() and shots["shared"].exists() and shots["obama"].exists()

    # events that a cams.yaml `database:` stored elsewhere: reached with --events-db
    other = f"sqlite:///{tmp_path / 'cams.db'}"
    (tmp_path / "elsewhere").mkdir()
    elsewhere = _seed(other, tmp_path / "elsewhere", photo)
    missing = runner.invoke(app, ["gallery", "delete", "staff", "-s", "obama", "-y", "--events-db",
                                  str(tmp_path / "typo.db")])
    assert missing.exit_code == 2 and "no database file" in missing.output, missing.output
    assert not (tmp_path / "typo.db").exists()
    done = runner.invoke(app, ["gallery", "delete", "staff", "-s", "obama", "-y", "--events-db", other])
    assert done.exit_code == 0, done.output
    assert _subjects(_stored(other)) == ["-", "lmm", "lmm", "lmm"]
    assert not elsewhere["obama"].exists() and elsewhere["shared"].exists()  # lmm's hit there names it
    assert _subjects(_stored(events_database)) == ["-"]  # and the gallery's own, searched always

    # a collection: the events of every subject in it
    done = runner.invoke(app, ["gallery", "enrol", "staff", str(photo), "-s", "lmm"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["gallery", "delete", "staff", "-y", "--events-db", other])
    assert done.exit_code == 0, done.output
    assert _subjects(_stored(other)) == ["-"] and not any(path.exists() for path in elsewhere.values())


def test_a_gallery_given_with_db_has_its_events_erased_where_watch_stored_them(events_database, examples, tmp_path):
    """`watch` stores its events in the default database (FACEATLAS_DATABASE_URL) whatever its
    gallery's: `gallery delete --db g.db` searched g.db alone (adding the video tables to it) and
    left them, and a later try could not reach them (the subject gone: 404)."""
    photo = examples / "examples" / "lin-manuel-miranda.png"
    gallery = f"sqlite:///{tmp_path / 'g.db'}"
    runner = CliRunner()
    done = runner.invoke(app, ["gallery", "create", "staff", "-p", "scrfd-mbf", "--db", gallery])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["gallery", "enrol", "staff", str(photo), "-s", "lmm", "--db", gallery])
    assert done.exit_code == 0, done.output
    shots = _seed(events_database, tmp_path, photo)
    done = runner.invoke(app, ["gallery", "delete", "staff", "-s", "lmm", "-y", "--db", gallery])
    assert done.exit_code == 0, done.output
    assert _subjects(_stored(events_database)) == ["-", "obama", "obama"] and not shots["lmm"].exists()
    with sqlite3.connect(tmp_path / "g.db") as connection:  # no video table made in the gallery's database
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "video_events" not in tables, tables


def test_events_an_older_watch_stored_under_a_service_space_are_listed_and_erased_as_the_tenants(examples, tmp_path):
    """A FaceAtlas before 2026-12-05 stored the events of cams.yaml's `tenant: svc:acme` under
    `svc:acme`; everything since stores, lists and erases them under `acme`. After the upgrade,
    deleting the subject they named (API or CLI) and `admin tenant delete acme` left those rows and
    their face snapshots, and GET /v1/events and `counts --tenant svc:acme` showed none of them.
    They are now moved under the tenant where the tables are opened, and erased with its own."""
    from faceatlas.db import create_database_engine
    from faceatlas.video import erase_subject_events, erase_tenant_events
    from faceatlas.video.plots import camera_counts

    photo = examples / "examples" / "lin-manuel-miranda.png"
    url = f"sqlite:///{tmp_path / 'old.db'}"
    sink = DatabaseSink(url, tenant="svc:acme")
    sink.emit(Event("counts", "gate", 1, 1.0, data={"minute": "2026-12-04T10:00", "classes": {"car": {"seen": 2}}}))
    sink.close()
    shots = _seed(url, tmp_path, photo, tenant="svc:acme")  # as the older watch wrote them
    with sqlite3.connect(tmp_path / "old.db") as db:  # (a sink opened moves what an earlier one stored)
        assert db.execute("SELECT count(*) FROM video_events WHERE tenant = 'svc:acme'").fetchone()[0] == 6
    engine = create_database_engine(url)
    assert erase_subject_events(engine, "acme", {"lmm"}) == 3  # the tenant's id, as the API and CLI give it
    assert not shots["lmm"].exists() and shots["shared"].exists() and shots["obama"].exists()
    assert _subjects(_stored(url, "acme")) == ["-", "-", "obama", "obama"] and _stored(url, "svc:acme") == []
    assert [row.counts for row in camera_counts(url, "gate", tenant="svc:acme")] == [{"seen": 2}]
    assert erase_tenant_events(engine, "acme") == 4 and not shots["obama"].exists()  # with the counts event
    with sqlite3.connect(tmp_path / "old.db") as db:
        assert db.execute("SELECT count(*) FROM video_events").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM video_counts").fetchone()[0] == 0
    engine.dispose()


def test_a_recording_an_older_watch_counted_under_a_service_space_is_not_counted_twice_when_run_again(tmp_path):
    """A recording's minute rows are keyed by a hash of the tenant's name: the rows an older watch
    stored under `svc:acme`, moved under `acme`, were not replaced by the same recording run again
    under `acme` (seen 10 where it saw 5)."""
    from faceatlas.video import list_counts

    url = f"sqlite:///{tmp_path / 'old.db'}"
    minute = {"minute": "2026-12-01T10:00", "recorded": True, "start": "2026-12-01T10:00:00+00:00",
              "classes": {"person": {"seen": 5}}}
    for tenant in ("svc:acme", "acme"):  # the older run, then the same run after the upgrade
        sink = DatabaseSink(url, tenant=tenant)
        sink.emit(Event("counts", "door", 100, 60.0, None, None, dict(minute), "evt1", "2026-12-01T10:01:00+00:00"))
        sink.close()
    engine = open_events_db(url)
    assert [row.counts for row in list_counts(engine, "acme", "door").rows] == [{"seen": 5}]
    engine.dispose()
