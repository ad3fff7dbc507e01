"""Erasing in an album through /v1/albums (SQLite and PostgreSQL) leaves no trace of what it erased:
not the people merged into an erased person, nor the names and spellings a person was called by
earlier (stored answers of Idempotency-Key calls, the audit trail), nor the photos left with no
face; and a face, a photo or the whole album can be deleted."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from faceatlas.apps.albums.db import AlbumRecord, Photo
from faceatlas.gallery.models import Tenant

ERASED = {"code": "not_found", "message": "what this call made or changed was erased since; its answer is no "
                                          "longer kept"}


def _tenant(api) -> tuple[str, str]:
    """A tenant of its own (its audit trail and Idempotency-Keys are no other test's) and its admin key."""
    tenant = f"erase-{uuid.uuid4().hex[:8]}"
    api.accounts.create_tenant(tenant)
    return tenant, api.accounts.create_key(tenant, ["admin"], rate_per_second=500, burst=500).token


def _photos(shared: Path, person: str, count: int, skip: int = 0) -> list[bytes]:
    folder = shared / "data" / "lfw" / "images" / person
    return [p.read_bytes() for p in sorted(folder.glob("*.jpg"))[skip:skip + count]]


def _album(http, album: str, photos: list[bytes]) -> list[dict]:
    """The album made of ``photos``; its people, most faces first."""
    for photo in photos:
        answer = http.post(f"/v1/albums/{album}/photos", files={"image": photo})
        assert answer.status_code == 200 and answer.json()["photos"] == 1, answer.text
    return http.get(f"/v1/albums/{album}/people").json()["people"]


def _trail(http, album: str) -> list[tuple[str, str, dict]]:
    events = http.get("/v1/audit", params={"limit": 1000}).json()["events"]
    return [(e["action"], e["target"], e["details"]) for e in events if e["target"].split("/")[0] == album]


def _erased(answer) -> None:
    assert (answer.status_code, answer.json()["error"]) == (404, ERASED), answer.text


def test_erasing_a_person_erases_the_people_merged_into_them(api, shared: Path) -> None:
    """p3 named "Zed Secret" (Idempotency-Key kz), merged into p1, p1 erased: a replay of kz still
    answered {"id": "p3", "name": "Zed Secret"} and `album.name fam/p3` stayed in the audit trail."""
    tenant, key = _tenant(api)
    album = "fam"
    bush = _photos(shared, "George_W_Bush", 3)
    with api.client(key) as http:
        people = _album(http, album, bush + _photos(shared, "Tony_Blair", 3))
        kept, absorbed = people[0]["id"], people[1]["id"]
        rename = {"url": f"/v1/albums/{album}/people/{absorbed}", "json": {"name": "Zed Secret"},
                  "headers": {"Idempotency-Key": "kz"}}
        assert http.patch(**rename).json()["name"] == "Zed Secret"
        merge = {"url": f"/v1/albums/{album}/people/{kept}/merge", "json": {"absorb": "Zed Secret"},
                 "headers": {"Idempotency-Key": "km"}}
        assert http.post(**merge).json() == {**http.get(f"/v1/albums/{album}/people").json()["people"][0],
                                             "id": kept, "name": "Zed Secret"}
        erased = http.delete(f"/v1/albums/{album}/people/{kept}")
        assert erased.status_code == 200, erased.text
        _erased(http.patch(**rename))  # answered, not run again, naming no one
        _erased(http.post(**merge))
        trail = _trail(http, album)
        again = http.post(f"/v1/albums/{album}/photos", files={"image": bush[0]})  # its photo, no face left on it
        assert (again.json()["photos"], again.json()["skipped"]) == (1, 0), again.text  # scanned again
    assert "Zed" not in json.dumps(trail)
    assert not {f"{album}/{kept}", f"{album}/{absorbed}"} & {target for _, target, _ in trail}
    assert {(action, target) for action, target, _ in trail} == {
        ("album.scan", album), ("album.name", f"{album}/[erased]"), ("album.merge", f"{album}/[erased]"),
        ("album.erase", f"{album}/[erased]")}


def test_erasing_a_person_erases_the_names_and_spellings_they_were_called_by(api, shared: Path) -> None:
    """PATCH people/p1 "Ann", PATCH people/Ann "George Bush", DELETE people/p1: `album.name fam/Ann`
    stayed in the audit trail, and so did the calls by `01`, ` p1` or `P1`; their stored answers too,
    and the DELETE's own (``{"person": "George Bush", ...}``)."""
    tenant, key = _tenant(api)
    album = "fam"
    with api.client(key) as http:
        person = _album(http, album, _photos(shared, "George_W_Bush", 2))[0]["id"]
        number = person[1:]
        calls = [(f"/v1/albums/{album}/people/{person}", "Ann"), (f"/v1/albums/{album}/people/Ann", "George Bush"),
                 (f"/v1/albums/{album}/people/0{number}", "George Bush"),
                 (f"/v1/albums/{album}/people/%20{person}", "George Bush"),
                 (f"/v1/albums/{album}/people/P{number}", "George Bush")]  # an id in either case
        for n, (url, name) in enumerate(calls):
            named = http.patch(url, json={"name": name}, headers={"Idempotency-Key": f"k{n}"})
            assert named.status_code == 200 and named.json()["id"] == person, named.text
        erase = {"url": f"/v1/albums/{album}/people/George Bush", "headers": {"Idempotency-Key": "kd"}}
        erased = http.delete(**erase)
        assert erased.status_code == 200 and erased.json()["person"] == "George Bush"
        for n, (url, name) in enumerate(calls):
            _erased(http.patch(url, json={"name": name}, headers={"Idempotency-Key": f"k{n}"}))
        again = http.delete(**erase)  # its stored answer: the counts, not the name it was called by
        assert again.headers["idempotent-replayed"] == "true" and "George" not in again.text
        assert again.json() == {k: v for k, v in erased.json().items() if k != "person"}
        trail = _trail(http, album)
    assert "Ann" not in json.dumps(trail) and "George" not in json.dumps(trail)
    assert {(action, target) for action, target, _ in trail} == {
        ("album.scan", album), ("album.name", f"{album}/[erased]"), ("album.erase", f"{album}/[erased]")}


def test_deleting_a_face_a_photo_and_the_album(api, shared: Path) -> None:
    """There was no way to delete an album, a photo or one face: the album, its photos, people,
    faces, vectors, gallery space (whose row names the album), stored answers and the ids in the
    audit trail now go; a person left with no face goes as if erased."""
    tenant, key = _tenant(api)
    album = "holiday"
    bush = _photos(shared, "George_W_Bush", 3)
    reader = api.accounts.create_key(tenant, ["read"], rate_per_second=500, burst=500).token
    with api.client(key) as http:
        people = _album(http, album, bush + _photos(shared, "Tony_Blair", 2, skip=2))
        bush_id = people[0]["id"]
        faces = http.get(f"/v1/albums/{album}/people/{bush_id}/faces").json()["faces"]
        lone = http.post(f"/v1/albums/{album}/split", json={"faces": [faces[0]["id"]]},
                         headers={"Idempotency-Key": "split"}).json()
        named = http.patch(f"/v1/albums/{album}/people/{lone['id']}", json={"name": "Lone"},
                           headers={"Idempotency-Key": "lone"})
        assert named.status_code == 200, named.text

        url = f"/v1/albums/{album}/faces/{faces[0]['id']}"
        deleted = http.delete(url, headers={"Idempotency-Key": "face"})
        assert deleted.json() == {"face": faces[0]["id"], "faces_deleted": 1, "photos_deleted": 1,
                                  "people_deleted": 1}, deleted.text  # its person's last face, its photo's only one
        replayed = http.delete(url, headers={"Idempotency-Key": "face"})
        assert replayed.json() == deleted.json() and replayed.headers["Idempotent-Replayed"] == "true"
        assert http.delete(url).status_code == 404
        assert http.get(f"/v1/albums/{album}/people/{lone['id']}/faces").status_code == 404
        _erased(http.patch(f"/v1/albums/{album}/people/{lone['id']}", json={"name": "Lone"},
                           headers={"Idempotency-Key": "lone"}))
        _erased(http.post(f"/v1/albums/{album}/split", json={"faces": [faces[0]["id"]]},
                          headers={"Idempotency-Key": "split"}))
        assert "Lone" not in json.dumps(_trail(http, album))

        photo = faces[1]["photo_id"]
        deleted = http.delete(f"/v1/albums/{album}/photos/{photo}")
        assert deleted.json() == {"photo": photo, "faces_deleted": 1, "photos_deleted": 1, "people_deleted": 0}
        assert http.delete(f"/v1/albums/{album}/photos/{photo}").status_code == 404
        assert http.delete(f"/v1/albums/{album}/photos/{2**40}").status_code == 422  # no photo id
        added = http.post(f"/v1/albums/{album}/photos", files={"image": bush[1]}).json()
        assert (added["photos"], added["skipped"]) == (1, 0)  # the deleted photo is scanned again
        renamed = http.patch(f"/v1/albums/{album}/people/{bush_id}", json={"name": "George"},
                             headers={"Idempotency-Key": "george"})
        assert renamed.status_code == 200, renamed.text

        with api.client(reader) as read_only:  # deleting needs write
            assert read_only.delete(f"/v1/albums/{album}").status_code == 403
        counts = {"people_deleted": len(http.get(f"/v1/albums/{album}/people").json()["people"])}
        deleted = http.delete(f"/v1/albums/{album}", headers={"Idempotency-Key": "album"})
        assert deleted.status_code == 200 and deleted.json()["album"] == album, deleted.text
        assert deleted.json()["people_deleted"] == counts["people_deleted"] and deleted.json()["photos_deleted"] == 4
        assert http.delete(f"/v1/albums/{album}", headers={"Idempotency-Key": "album"}).json() == deleted.json()
        assert http.delete(f"/v1/albums/{album}").status_code == 404
        _erased(http.patch(f"/v1/albums/{album}/people/{bush_id}", json={"name": "George"},
                           headers={"Idempotency-Key": "george"}))
        assert album not in http.get("/v1/albums").json()["albums"]
        assert http.get(f"/v1/albums/{album}/people").status_code == 404
        trail = _trail(http, album)
    assert "George" not in json.dumps(trail)
    assert {target for _, target, _ in trail} == {album, f"{album}/[erased]"}  # its own records keep its name
    assert ("album.delete", album) in {(action, target) for action, target, _ in trail}
    with Session(api.accounts.engine) as session:
        assert session.scalars(select(Tenant.name).where(Tenant.name.like(f"app:albums:svc:{tenant}:%"))).all() == []
        assert session.scalars(select(AlbumRecord.id).where(AlbumRecord.owner == f"svc:{tenant}")).all() == []
        assert session.scalars(select(Photo.id).where(Photo.album_id.not_in(select(AlbumRecord.id)))).all() == []


def test_the_cli_reaches_a_service_tenant_s_albums_and_erases_as_the_api_does(api, shared: Path, tmp_path: Path,
                                                                              monkeypatch) -> None:
    """`faceatlas album` had no --tenant: an operator could not reach a service tenant's albums
    (a person's erasure request) from the CLI. With --tenant svc:<id> it reads them, and its erase
    and delete leave the tenant's audit trail naming no one, as the API's DELETEs do."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app as cli

    tenant, key = _tenant(api)
    album = "fam"
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))

    def run(*args: str, code: int = 0) -> object:
        done = CliRunner().invoke(cli, ["album", *args, "-a", album, "--tenant", f"svc:{tenant}",
                                        "--db", api.database_url, "--json"])
        assert done.exit_code == code, done.output
        return json.loads(done.stdout) if code == 0 else done.output

    with api.client(key) as http:
        people = _album(http, album, _photos(shared, "George_W_Bush", 3) + _photos(shared, "Tony_Blair", 3))
        kept = people[0]["id"]
        assert http.patch(f"/v1/albums/{album}/people/{kept}", json={"name": "Zed Secret"}).status_code == 200
        listed = run("people")
        assert [(p["id"], p["faces"]) for p in listed] == [(p["id"], p["faces"]) for p in people]
        unreached = CliRunner().invoke(cli, ["album", "people", "-a", album, "--db", api.database_url])
        assert unreached.exit_code == 2 and "not_found" in unreached.output  # the CLI's own space has none
        assert ("album.name", f"{album}/{kept}") in {(a, t) for a, t, _ in _trail(http, album)}
        assert run("erase", "Zed Secret", "--yes")["faces_deleted"] == people[0]["faces"]
        trail = _trail(http, album)
        assert f"{album}/{kept}" not in {t for _, t, _ in trail}
        assert ("album.name", f"{album}/[erased]") in {(a, t) for a, t, _ in trail}
        assert kept not in {p["id"] for p in http.get(f"/v1/albums/{album}/people").json()["people"]}
        gone = CliRunner().invoke(cli, ["album", "delete", album, "--tenant", f"svc:{tenant}",
                                        "--db", api.database_url, "--yes", "--json"])
        assert gone.exit_code == 0 and json.loads(gone.stdout)["faces_deleted"] >= 1, gone.output
        assert http.get("/v1/albums").json()["albums"] == []
        assert {t for _, t, _ in _trail(http, album)} <= {album, f"{album}/[erased]"}
