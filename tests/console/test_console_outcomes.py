"""The console's store, album and KYC pages say what happened and offer what the API offers: a
member's group photo refused and said so, album corrections and erasures that end on a page that
exists, questions that name who is merged, headings that follow the outcome, pending KYC sessions
and bad filters worded, alerts resolved once. In process (``TestClient``), no browser needed."""

from __future__ import annotations

import html
import re
from datetime import UTC
from pathlib import Path

from faceatlas.apps.retail import Camera, RetailStore, StoreConfig
from tests.console.test_console_wording import _console, _text, _upload

STORE = "corner"
EXAMPLES = "data/face_recognition_examples/tests/test_images"
STAY = {"follow_redirects": False}  # a post's redirect is looked at, not followed


def _store(fast_analyzer, url: str, folder: Path) -> None:
    """A store of tenant acme, as `retail run` leaves it."""
    config = StoreConfig(id=STORE, tenant="acme", cameras=[Camera(id="door", role="door")])
    RetailStore.open(config, fast_analyzer, url, index_dir=folder / "indexes").close()


def test_a_member_photo_of_several_people_is_refused_and_said_so(fast_analyzer, examples, tmp_path) -> None:
    """A group photo enrolled its largest face (maybe a bystander's) under the member's consent,
    and the page said "face enrolled". The photo is refused, with why, the member's own photo enrolled."""
    group, obama = examples / "examples/two_people.jpg", examples / "tests/test_images/obama.jpg"
    with _console(fast_analyzer, tmp_path) as console:
        _store(fast_analyzer, console.database_url, tmp_path)
        client, csrf = console.client, console.csrf
        form = {"name": "Barack", "purposes": "visit_recognition", "csrf": csrf}
        enrolled = client.post(f"/console/store/{STORE}/members", data=form,
                               files=[("photos", _upload(group)), ("photos", _upload(obama))])
        only_group = client.post(f"/console/store/{STORE}/members", data={**form, "name": "Group"},
                                 files=[("photos", _upload(group))])
        members = _text(client.get(f"/console/store/{STORE}/members").text)
    said = _text(enrolled.text)
    assert enrolled.status_code == 200 and "Enrolled Barack" in said
    assert "two_people.jpg: too_many_faces — 2 faces in the image" in said and "a photo of the member alone" in said
    assert "obama.jpg: face enrolled" in said and "1 face enrolled" in said
    assert only_group.status_code == 422 and "Nobody enrolled" in _text(only_group.text)
    assert "Barack" in members and "Group" not in members


def _album(client, csrf: str, shared: Path) -> dict[str, int]:
    """Album ``family`` of three photos of Obama and two of Biden (crops kept); person id → faces."""
    train = shared / "data/face_recognition_examples/examples/knn_examples/train"
    files = [train / "obama/obama.jpg", train / "obama/obama2.jpg", shared / EXAMPLES / "obama3.jpg",
             train / "biden/biden.jpg", train / "biden/biden2.jpg"]
    added = client.post("/console/albums/photos", data={"album": "family", "keep_crops": "true", "csrf": csrf},
                        files=[("photos", _upload(p)) for p in files])
    assert added.status_code == 200, added.text[-500:]
    return _people(added.text)


def _people(page: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r'data-person="(p\d+)".*?· (\d+) face', page, re.S)}


def _faces(client, person: str) -> list[str]:
    return re.findall(r'data-face="(\d+)"', client.get(f"/console/albums/family/people/{person}").text)


def _asked(answer) -> str:
    """The question of a page that asks first."""
    assert answer.status_code == 200, answer.text[-400:]
    return html.unescape(re.search(r'<p id="question">([^<]+)</p>', answer.text).group(1))


def test_not_this_person_on_a_persons_only_face_ends_on_a_page_that_exists(fast_analyzer, shared,
                                                                            tmp_path) -> None:
    """"Not this person" on a person's only face worked, then redirected to that person's page: a
    404, the person being gone with their last face. It ends on the album's page; a rejection that
    leaves the person their other faces still goes back to them, and a move or split ends on the
    person the faces went to."""
    with _console(fast_analyzer, tmp_path) as console:
        client, csrf = console.client, console.csrf
        people = _album(client, csrf, shared)
        obama = max(people, key=people.get)
        faces = _faces(client, obama)
        lone = client.post("/console/albums/family/split", data={"faces": faces[0], "csrf": csrf}, **STAY)
        single = lone.headers["location"].rsplit("/", 1)[1]
        only = client.post(f"/console/albums/family/faces/{faces[0]}/reject", data={"back": single, "csrf": csrf},
                           **STAY)
        assert only.status_code == 303 and only.headers["location"] == "/console/albums/family"
        assert client.get(only.headers["location"]).status_code == 200
        one_of_two = client.post(f"/console/albums/family/faces/{faces[1]}/reject",
                                 data={"back": obama, "csrf": csrf}, **STAY)
        assert one_of_two.headers["location"] == f"/console/albums/family/people/{obama}"
        assert client.get(one_of_two.headers["location"]).status_code == 200
        moved = client.post("/console/albums/family/move", data={"faces": faces[0], "to": obama, "csrf": csrf},
                            **STAY)
        assert moved.headers["location"] == f"/console/albums/family/people/{obama}"  # its one-face person emptied
        assert client.get(moved.headers["location"]).status_code == 200
        split = client.post("/console/albums/family/split", data={"faces": _faces(client, obama), "csrf": csrf},
                            **STAY)
        assert client.get(split.headers["location"]).status_code == 200  # a person emptied by the split


def test_a_person_a_face_a_photo_and_the_album_are_erased_from_the_console(fast_analyzer, shared,
                                                                           tmp_path) -> None:
    """The console could not erase an album's person nor delete a face, a photo or the album, which
    the API can, and its upload form promised "erasing a person removes them". Each is a button that
    asks first (the dialog, or a page where scripts did not run), with the write scope and the
    session's CSRF token, calls the API's use case and forgets what the API's erasure forgets: the
    person's id and name in the audit trail and the stored answers of API calls on them."""
    with _console(fast_analyzer, tmp_path) as console:
        client, csrf = console.client, console.csrf
        api = {"Authorization": f"Bearer {console.key}"}
        people = _album(client, csrf, shared)
        obama, biden = sorted(people, key=people.get, reverse=True)[:2]
        named = client.patch(f"/v1/albums/family/people/{biden}", json={"name": "Joe"},
                             headers={**api, "Idempotency-Key": "joe"})
        assert named.status_code == 200, named.text
        trail = client.get("/v1/audit", headers=api).json()["events"]
        assert ("album.name", f"family/{biden}") in [(e["action"], e["target"]) for e in trail]

        page = client.get(f"/console/albums/family/people/{biden}").text
        dialog = html.unescape(re.search(rf'action="/console/albums/family/people/{biden}/erase" class="confirm" '
                                         r'data-confirm="([^"]+)"', page).group(1))
        asked = _asked(client.post(f"/console/albums/family/people/{biden}/erase", data={"csrf": csrf}))
        assert asked == dialog and asked.startswith(f"Erase “Joe” ({biden})?") and "removed from the audit" in asked
        assert client.get(f"/v1/albums/family/people/{biden}/faces", headers=api).status_code == 200  # only asked
        assert client.post(f"/console/albums/family/people/{biden}/erase",
                           data={"confirmed": "yes"}).status_code == 403  # no CSRF token
        erased = client.post(f"/console/albums/family/people/{biden}/erase", data={"csrf": csrf, "confirmed": "yes"},
                             **STAY)
        assert (erased.status_code, erased.headers["location"]) == (303, "/console/albums/family")
        assert client.get(f"/v1/albums/family/people/{biden}/faces", headers=api).status_code == 404
        replayed = client.patch(f"/v1/albums/family/people/{biden}", json={"name": "Joe"},
                                headers={**api, "Idempotency-Key": "joe"})
        assert replayed.status_code == 404  # the stored answer naming Joe is forgotten, as the API's erasure does
        trail = [(e["action"], e["target"]) for e in client.get("/v1/audit", headers=api).json()["events"]]
        assert ("album.name", f"family/{biden}") not in trail and ("album.erase", "family/[erased]") in trail

        faces = client.get(f"/v1/albums/family/people/{obama}/faces", headers=api).json()["faces"]
        page = client.get(f"/console/albums/family/people/{obama}").text
        assert f'form="delete-face-{faces[0]["id"]}"' in page and f'id="delete-photo-{faces[1]["id"]}"' in page
        gone = faces[0]["id"]
        assert _asked(client.post(f"/console/albums/family/faces/{gone}/delete",
                                  data={"csrf": csrf, "back": obama})).startswith(f"Delete face {gone}?")
        deleted = client.post(f"/console/albums/family/faces/{gone}/delete",
                              data={"csrf": csrf, "back": obama, "confirmed": "yes"}, **STAY)
        assert deleted.headers["location"] == f"/console/albums/family/people/{obama}"
        assert client.get(f"/v1/albums/family/faces/{gone}/crop", headers=api).status_code == 404
        photo = faces[1]["photo_id"]
        assert _asked(client.post(f"/console/albums/family/photos/{photo}/delete",
                                  data={"csrf": csrf, "back": obama})).startswith(f"Delete photo {photo} ")
        deleted = client.post(f"/console/albums/family/photos/{photo}/delete",
                              data={"csrf": csrf, "back": obama, "confirmed": "yes"}, **STAY)
        assert deleted.headers["location"] == f"/console/albums/family/people/{obama}"
        left = client.get(f"/v1/albums/family/people/{obama}/faces", headers=api).json()["faces"]
        assert [f["id"] for f in left] == [faces[2]["id"]]
        assert client.delete(f"/v1/albums/family/photos/{photo}", headers=api).status_code == 404  # gone already
        last = client.post(f"/console/albums/family/faces/{faces[2]['id']}/delete",  # their last face: they go too
                           data={"csrf": csrf, "back": obama, "confirmed": "yes"}, **STAY)
        assert last.headers["location"] == "/console/albums/family"

        album = client.get("/console/albums/family").text
        assert 'action="/console/albums/family/delete" class="confirm"' in album
        assert _asked(client.post("/console/albums/family/delete", data={"csrf": csrf})).startswith(
            "Delete album family with every person")
        dropped = client.post("/console/albums/family/delete", data={"csrf": csrf, "confirmed": "yes"}, **STAY)
        assert dropped.headers["location"] == "/console/albums"
        assert "family" not in client.get("/v1/albums", headers=api).json()["albums"]
        assert client.get("/console/albums/family").status_code == 404


def test_album_upload_heading_and_merge_question_follow_what_happens(fast_analyzer, shared, tmp_path) -> None:
    """An upload that added nothing to an existing album (a photo already in it, a file refused) was
    headed "Photos added"; the merge asked without scripts named the people by the references sent
    and never said that merging two named people loses the first one's name."""
    train = shared / "data/face_recognition_examples/examples/knn_examples/train"
    with _console(fast_analyzer, tmp_path) as console:
        client, csrf = console.client, console.csrf
        people = _album(client, csrf, shared)
        again = client.post("/console/albums/photos", data={"album": "family", "csrf": csrf}, files=[
            ("photos", _upload(train / "obama/obama.jpg")), ("photos", ("notes.jpg", b"not a photo", "image/jpeg"))])
        fresh = client.post("/console/albums/photos", data={"album": "family", "csrf": csrf}, files=[
            ("photos", _upload(train.parent.parent / "obama_small.jpg")),
            ("photos", _upload(train / "biden/biden.jpg"))])
        obama, biden = sorted(people, key=people.get, reverse=True)[:2]
        for person, name in ((obama, "Barack"), (biden, "Joe")):
            client.post(f"/console/albums/family/people/{person}/name", data={"name": name, "csrf": csrf})
        named = _asked(client.post("/console/albums/family/merge", data={"absorb": biden, "into": obama,
                                                                        "csrf": csrf}))
        unnamed = client.post("/console/albums/family/split", data={"faces": _faces(client, obama)[0], "csrf": csrf},
                              **STAY).headers["location"].rsplit("/", 1)[1]
        into_unnamed = _asked(client.post("/console/albums/family/merge",
                                          data={"absorb": obama, "into": unnamed, "csrf": csrf}))
        dialog = html.unescape(re.search(r'action="/console/albums/family/merge" class="confirm"\s+'
                                         r'data-confirm="([^"]+)"', client.get("/console/albums/family").text)[1])
    heading = re.compile(r'<section class="card" aria-live="polite" id="upload-outcome"><h2>([^<]+)</h2>')
    assert heading.search(again.text)[1] == "No photo added", _text(again.text)[:300]
    assert "obama.jpg: already in the album" in _text(again.text) and "notes.jpg: invalid_image" in _text(again.text)
    assert heading.search(fresh.text)[1] == "1 photo added"  # obama_small.jpg is new, biden.jpg was added before
    assert named.startswith(f"Merge “Joe” ({biden}) into “Barack” ({obama})?")
    assert f"where both are named, the name of “Joe” ({biden}) is lost" in named
    assert into_unnamed.startswith(f"Merge “Barack” ({obama}) into {unnamed} (unnamed)?")
    assert dialog.startswith("Merge {absorb} into {into}?")  # console.js fills in the options' data-label


def test_a_pending_kyc_session_and_a_bad_status_filter_are_worded(fast_analyzer, tmp_path) -> None:
    """A pending session (nothing submitted) said "No reference frame kept (retention 0 days, or
    past it)" under an empty "Audit" heading; a decided one showed its audit as JSON ("threshold":
    null); ?status=bogus listed every session. Each is said in words; the filter is refused (422)
    as the API refuses it."""
    from sqlalchemy import update

    from faceatlas.apps.kyc import KycService
    from faceatlas.apps.kyc.db import KycSession
    from faceatlas.db import create_database_engine, utcnow

    with _console(fast_analyzer, tmp_path) as console:
        engine = create_database_engine(console.database_url)
        kyc = KycService(engine, fast_analyzer)
        pending, decided = kyc.create("svc:acme", ["blink"]), kyc.create("svc:acme", ["open_mouth"])
        with engine.begin() as connection:
            connection.execute(update(KycSession).where(KycSession.id == decided.id).values(
                status="rejected", decided_at=utcnow(), reasons=["liveness_failed"],
                details={"liveness": {"score": 0.0166, "threshold": None, "real": False},
                         "challenge_result": {"passed": False, "done": []}, "far": 1e-6, "seconds": None}))
        engine.dispose()
        client = console.client
        waiting = client.get(f"/console/kyc/{pending.id}").text
        refused = client.get(f"/console/kyc/{decided.id}").text
        bogus = client.get("/console/kyc", params={"status": "bogus"})
        listed = client.get("/console/kyc", params={"status": ""})
        api = client.get("/v1/kyc/sessions", params={"status": "bogus"},
                         headers={"Authorization": f"Bearer {console.key}"})
    assert "Nothing submitted yet" in _text(waiting) and "No reference frame kept" not in waiting
    assert 'id="audit"' not in waiting and "No audit record yet" in _text(waiting)
    audit = _text(re.search(r'<table id="audit">.*?<tbody>(.+?)</tbody>', refused, re.S)[1])
    assert "liveness score: 0.0166, real: no" in audit and "far 1e-06" in audit
    assert "challenge result passed: no, done: (none)" in audit
    assert "threshold" not in audit and "null" not in audit and "None" not in audit and "{" not in audit
    assert "seconds" not in audit  # a value not present is not shown
    assert bogus.status_code == 422 and "status is one of pending, processing" in _text(bogus.text)
    assert listed.status_code == 200 and pending.id in listed.text and decided.id in listed.text
    assert (api.status_code, api.json()["error"]["code"]) == (422, "validation_error")


def test_store_alerts_in_words_resolved_once_over_exactly_thirty_days(fast_analyzer, tmp_path) -> None:
    """An alert's details were raw JSON ({"items": 3, "amount_cents": 537, ...}); resolving it
    again answered 303 and wrote a new resolution time over the first; "Last 30 days" summed 31
    days, as the API's default report did. Now: words in the store's currency, the first resolution
    kept and "already resolved" said, and 30 days (today and the 29 before) in both doors."""
    from datetime import date, timedelta

    from faceatlas.apps.retail.db import Alert
    from faceatlas.db import create_database_engine, utcnow

    with _console(fast_analyzer, tmp_path) as console:
        _store(fast_analyzer, console.database_url, tmp_path)
        engine = create_database_engine(console.database_url)
        with engine.begin() as connection:
            alert = connection.execute(Alert.__table__.insert().values(
                store_id=STORE, kind="unidentified_shopper", camera="door", event_id="e1", at=utcnow(),
                details={"items": 3, "amount_cents": 537, "face_seen": True})).inserted_primary_key[0]
        client, csrf = console.client, console.csrf
        page = client.get(f"/console/store/{STORE}").text
        first = client.post(f"/console/store/{STORE}/alerts/{alert}/resolve", data={"csrf": csrf}, **STAY)
        with engine.connect() as connection:
            resolved_at = connection.execute(Alert.__table__.select().where(Alert.id == alert)).one().resolved_at
        again = client.post(f"/console/store/{STORE}/alerts/{alert}/resolve", data={"csrf": csrf}, **STAY)
        api = client.post(f"/v1/retail/stores/{STORE}/alerts/{alert}/resolve",
                          headers={"Authorization": f"Bearer {console.key}"}).json()
        with engine.connect() as connection:
            kept = connection.execute(Alert.__table__.select().where(Alert.id == alert)).one().resolved_at
        report = client.get(f"/v1/retail/stores/{STORE}/analytics",
                            headers={"Authorization": f"Bearer {console.key}"}).json()
        trail = client.get("/v1/audit", headers={"Authorization": f"Bearer {console.key}"}).json()["events"]
        engine.dispose()
    row = _text(re.search(r'<table id="alerts">(.+?)</table>', page, re.S)[1])
    assert "3 items, 5.37 EUR, face seen" in row and "amount_cents" not in row and "{" not in row
    assert first.status_code == 303 and again.status_code == 200
    assert "was already resolved" in _text(again.text) and "nothing changed" in _text(again.text)
    assert kept == resolved_at and api["already_resolved"] is True
    assert api["resolved_at"] == resolved_at.replace(tzinfo=UTC).isoformat()  # UTC, with its offset
    assert [e["action"] for e in trail].count("retail.alert.resolve") == 1  # the repeat did nothing to audit
    first_day, last_day = date.fromisoformat(report["from"]), date.fromisoformat(report["to"])
    assert last_day - first_day == timedelta(days=29)  # 30 days, the last one included
    assert "Last 30 days" in page


def test_a_subject_and_a_collection_deleted_in_the_console_leave_no_stored_answer_naming_them(
        fast_analyzer, examples, tmp_path) -> None:
    """The API's deletes forget the stored answers (Idempotency-Key) of calls on what they erased;
    the console's deletes of a subject and of a collection did not: a retried subject creation
    still answered the deleted subject's name and metadata for a day."""
    obama = examples / "tests/test_images/obama.jpg"
    with _console(fast_analyzer, tmp_path) as console:
        client, csrf = console.client, console.csrf
        api = {"Authorization": f"Bearer {console.key}"}
        assert client.post("/v1/collections", json={"name": "staff"}, headers=api).status_code == 201
        create = {"json": {"id": "obama", "name": "Barack Obama", "metadata": {"desk": "7"}},
                  "headers": {**api, "Idempotency-Key": "create-obama"}}
        assert client.post("/v1/collections/staff/subjects", **create).status_code == 201
        enrol = {"files": {"image": _upload(obama)}, "headers": {**api, "Idempotency-Key": "enrol-obama"}}
        assert client.post("/v1/collections/staff/subjects/obama/faces", **enrol).status_code == 201
        deleted = client.post("/console/galleries/staff/subjects/obama/delete",
                              data={"csrf": csrf, "confirmed": "yes"}, **STAY)
        assert deleted.status_code == 303
        for call in (client.post("/v1/collections/staff/subjects", **create),
                     client.post("/v1/collections/staff/subjects/obama/faces", **enrol)):
            assert call.headers.get("Idempotent-Replayed") == "true" and call.status_code == 404, call.text
            assert "Barack" not in call.text and "desk" not in call.text

        keep = {"json": {"name": "visitors"}, "headers": {**api, "Idempotency-Key": "create-visitors"}}
        assert client.post("/v1/collections", **keep).status_code == 201
        visit = {"json": {"id": "guest", "name": "Guest Name"},
                 "headers": {**api, "Idempotency-Key": "create-guest"}}
        assert client.post("/v1/collections/visitors/subjects", **visit).status_code == 201
        assert client.post("/console/galleries/visitors/delete", data={"csrf": csrf, "confirmed": "yes"},
                           **STAY).status_code == 303
        replayed = client.post("/v1/collections/visitors/subjects", **visit)
        assert replayed.headers.get("Idempotent-Replayed") == "true" and replayed.status_code == 404
        assert "Guest Name" not in replayed.text


def test_today_on_the_store_page_and_the_apis_window_is_the_utc_date(fast_analyzer, tmp_path, monkeypatch) -> None:
    """"Today" was the server's local date while visits are counted by UTC day: under a zone a day
    ahead of UTC (or behind it) the page showed 0 visits today with 3 shoppers inside, and the API's
    default window ended on the local date. Between the two zones below, one is a day off UTC at
    any hour."""
    import time

    from faceatlas.apps.retail import Entry
    from faceatlas.db import utcnow

    with _console(fast_analyzer, tmp_path) as console:
        config = StoreConfig(id=STORE, tenant="acme", cameras=[Camera(id="door", role="door")])
        with RetailStore.open(config, fast_analyzer, console.database_url, index_dir=tmp_path / "idx") as store:
            for track in ("a", "b", "c"):
                store.entry(Entry("door", utcnow(), track=f"{STORE}:{track}"))
        try:
            for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):  # UTC+14, UTC-12
                monkeypatch.setenv("TZ", zone)
                time.tzset()
                page = console.client.get(f"/console/store/{STORE}").text
                report = console.client.get(f"/v1/retail/stores/{STORE}/analytics",
                                            headers={"Authorization": f"Bearer {console.key}"}).json()
                today = utcnow().date().isoformat()
                assert f"Today ({today})" in page and report["to"] == today, (zone, time.strftime("%Y-%m-%d"))
                assert re.search(r'<th scope="row">Visits</th><td>3</td>', page), zone
        finally:
            monkeypatch.undo()
            time.tzset()
