"""Deleting a gallery subject (or its collection) through the API deletes every trace of it, the video
events too: the events that name it (``identified``, ``watchlist_hit``, ``track_ended``, an
``identity_lost`` of it) and the snapshot files they kept, its unblurred face. They stayed: GET
/v1/events listed them with its id and name, and GET /v1/events/{id}/snapshot served the face."""

from __future__ import annotations

import uuid
from pathlib import Path

import cv2

from faceatlas.video import DatabaseSink, Event, list_events, open_events_db


def _jpeg(source: Path, target: Path) -> Path:
    """``source`` (a real photo) written as the JPEG a camera's ``snapshots:`` keeps."""
    assert cv2.imwrite(str(target), cv2.imread(str(source)))
    return target


def _seed(url: str, tenant: str, folder: Path, examples: Path) -> dict[str, Path]:
    """The events a `watch` run stores for ``tenant``: the subject ``lmm`` identified, hit, lost and
    ended, ``obama`` identified, a line crossing; one snapshot file (``shared``) named by an event of
    each (two runs of a camera that wrote one file)."""
    shots = {"lmm": _jpeg(examples / "examples" / "lin-manuel-miranda.png", folder / f"{tenant}_lmm.jpg"),
             "obama": _jpeg(examples / "tests" / "test_images" / "obama.jpg", folder / f"{tenant}_obama.jpg"),
             "shared": _jpeg(examples / "examples" / "lin-manuel-miranda.png", folder / f"{tenant}_shared.jpg")}
    lmm = {"subject": "lmm", "name": "Lin-Manuel Miranda", "similarity": 0.71, "far_level": None}
    sink = DatabaseSink(url, tenant=tenant)
    sink.emit(Event("identified", "door", 10, 0.4, 1, "face", {**lmm, "previous": None, "snapshot": str(shots["lmm"])}))
    sink.emit(Event("watchlist_hit", "door", 10, 0.4, 1, "face", {**lmm, "snapshot": str(shots["shared"])}))
    sink.emit(Event("identity_lost", "door", 30, 1.2, 1, "face", {"evidence": 3, "agreeing": 0, "previous": "lmm"}))
    sink.emit(Event("track_ended", "door", 40, 1.6, 1, "face", {"dwell": 1.2, "subject": "lmm"}))
    sink.emit(Event("identified", "door", 50, 2.0, 2, "face", {"subject": "obama", "name": "Barack Obama",
                                                               "previous": None, "snapshot": str(shots["obama"])}))
    obama_hit = {"subject": "obama", "snapshot": str(shots["shared"])}
    sink.emit(Event("watchlist_hit", "door", 50, 2.0, 2, "face", obama_hit))
    sink.emit(Event("line_crossed", "door", 60, 2.4, 3, "person", {"direction": "in"}))
    sink.close()
    return shots


def _naming(events: list[dict], subject: str) -> list[dict]:
    return [e for e in events if subject in (e["data"].get("subject"), e["data"].get("previous"))
            or "Lin-Manuel" in str(e["data"])]


def test_deleting_a_subject_or_its_collection_deletes_its_events_and_snapshots(api, examples, tmp_path):
    tenant, other = f"own-{uuid.uuid4().hex[:12]}", f"own-{uuid.uuid4().hex[:12]}"
    api.accounts.create_tenant(tenant)
    token = api.accounts.create_key(tenant, ["admin"], rate_per_second=500, burst=500).token
    shots = _seed(api.database_url, tenant, tmp_path, examples)
    kept = _seed(api.database_url, other, tmp_path, examples)  # another tenant's subject of the same id
    with api.client(token) as http:  # the session's app, its lifespan not entered again (that closed its pool)
        assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
        for subject, name in (("lmm", "Lin-Manuel Miranda"), ("obama", "Barack Obama")):
            assert http.post("/v1/collections/staff/subjects", json={"id": subject, "name": name}).status_code == 201
        before = http.get("/v1/events").json()["events"]
        assert len(_naming(before, "lmm")) == 4
        hit = next(e for e in before if e["type"] == "identified" and e["data"]["subject"] == "lmm")
        assert http.get(f"/v1/events/{hit['id']}/snapshot").status_code == 200

        assert http.delete("/v1/collections/staff/subjects/lmm").status_code == 204
        after = http.get("/v1/events").json()["events"]
        assert _naming(after, "lmm") == []
        assert http.get(f"/v1/events/{hit['id']}/snapshot").status_code == 404
        assert not shots["lmm"].exists()
        assert shots["shared"].exists() and shots["obama"].exists()  # obama's events name them
        assert sorted(e["type"] for e in after) == ["identified", "line_crossed", "watchlist_hit"]
        for event in (e for e in after if "snapshot" in e["data"]):
            assert http.get(f"/v1/events/{event['id']}/snapshot").status_code == 200

        assert http.delete("/v1/collections/staff").status_code == 204
        left = http.get("/v1/events").json()["events"]
        assert [e["type"] for e in left] == ["line_crossed"]  # names nobody
        assert not shots["obama"].exists() and not shots["shared"].exists()
    engine = open_events_db(api.database_url)
    try:  # the other tenant's events and files are its own
        assert len(_naming([e.to_dict() for e in list_events(engine, other)], "lmm")) == 4
    finally:
        engine.dispose()
    assert all(path.exists() for path in kept.values())
