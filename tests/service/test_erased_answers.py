"""The stored answers of ``Idempotency-Key`` calls after an erasure, over SQLite, with the keys in
this process's memory and in a real Redis: a deleted collection's create and import answers are
replayed as the 404 that names nothing (not its name and metadata), and a replayed erasure's
answer, which leaves out what it erased, still fits the route's OpenAPI response model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceatlas.apps.retail import Camera, RetailStore, StoreConfig
from faceatlas.service.schemas import AlbumEraseOut, RetailErasureOut

ERASED = {"code": "not_found", "message": "what this call made or changed was erased since; its answer is no "
                                          "longer kept"}


class Api:
    def __init__(self, http: TestClient, database_url: str, state: str) -> None:
        self.http, self.database_url, self.state = http, database_url, state

    def key(self, name: str) -> dict[str, str]:
        return {"Idempotency-Key": f"{self.state}-{name}"}

    def stored(self) -> list[bytes]:
        """Every answer the shared state keeps, with the path it is kept under (in Redis: the value)."""
        state = self.http.app.state.shared  # type: ignore[attr-defined]
        if self.state == "memory":
            return [answer.path.encode() + b"\n" + answer.body for _, _, answer in state._answers.values()]
        return [name + b"=" + (state.redis.get(name) or b"") for name in state.redis.scan_iter(match="*idem*")]


@pytest.fixture(scope="module", params=["memory", "redis"])
def api(request, admin_app, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with admin_app("sqlite", request.param, tmp_path_factory.mktemp("erased")) as app:
        yield Api(app.http, app.database_url, app.state)


def _erased(answer) -> None:
    assert (answer.status_code, answer.json()["error"]) == (404, ERASED), answer.text
    assert answer.headers["idempotent-replayed"] == "true"


def test_a_deleted_collection_s_create_and_import_are_replayed_as_erased(api: Api) -> None:
    """Probe: POST /v1/collections {"name": "erasec", "metadata": {"owner": "Jane Doe"}} with a key,
    DELETE /v1/collections/erasec, the same POST again: 201 replayed with the erased metadata while
    the collection was gone (the create answer is kept under /v1/collections, which only names it in
    its body; an import's under /v1/collections/import). Now both replay the 404 that names
    nothing; another collection's create answer stays."""
    owner = {"owner": "Jane Doe"}
    create = {"url": "/v1/collections", "json": {"name": "erasec", "metadata": owner},
              "headers": api.key("erasec-create")}
    kept = {"url": "/v1/collections", "json": {"name": "keptc", "metadata": {"owner": "Kim Kept"}},
            "headers": api.key("keptc-create")}
    assert api.http.post(**create).status_code == 201
    assert api.http.post(**kept).status_code == 201
    export = api.http.get("/v1/collections/erasec/export")
    assert export.status_code == 200, export.text
    imported = {"url": "/v1/collections/import", "params": {"name": "erasei"},
                "files": {"file": ("erasec.parquet", export.content, "application/vnd.apache.parquet")},
                "headers": api.key("erasei-import")}
    first = api.http.post(**imported)
    assert first.status_code == 201 and first.json()["name"] == "erasei", first.text

    for name in ("erasec", "erasei"):
        assert api.http.delete(f"/v1/collections/{name}").status_code == 204
        assert api.http.get(f"/v1/collections/{name}").status_code == 404
    _erased(api.http.post(**create))
    _erased(api.http.post(**imported))
    assert api.http.get("/v1/collections/erasec").status_code == 404  # answered, not created anew
    assert not [answer for answer in api.stored() if b"Jane Doe" in answer]
    again = api.http.post(**kept)  # another collection's answer stays
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["metadata"] == {"owner": "Kim Kept"}

    # a collection named "import": its erasure is not that of every collection imported
    other = {**imported, "params": {"name": "erasej"}, "headers": api.key("erasej-import")}
    assert api.http.post(**other).status_code == 201
    assert api.http.post("/v1/collections", json={"name": "import"}).status_code == 201
    assert api.http.delete("/v1/collections/import").status_code == 204
    again = api.http.post(**other)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"


def test_a_collection_s_delete_keeps_its_answer_under_the_collections_path(api: Api) -> None:
    """A collection's DELETE with a key kept its own answer under /v1/collections/<name>: the
    erased collection's name stayed in the store for a day (docs/deploy.md: the erasing DELETE's
    answer is kept under the parent path). A retry still answers its 204, not run again."""
    delete = {"url": "/v1/collections/zq9coll", "headers": {"Idempotency-Key": f"{api.state}-coll-delete"}}
    assert api.http.post("/v1/collections", json={"name": "zq9coll"}).status_code == 201
    assert api.http.delete(**delete).status_code == 204
    assert not [answer for answer in api.stored() if b"zq9coll" in answer]
    assert api.http.post("/v1/collections", json={"name": "zq9coll"}).status_code == 201  # made again
    again = api.http.delete(**delete)
    assert (again.status_code, again.content, again.headers["idempotent-replayed"]) == (204, b"", "true")
    assert api.http.get("/v1/collections/zq9coll").status_code == 200  # the retry deleted nothing


def _photos(shared: Path, person: str, count: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted((shared / "data" / "lfw" / "images" / person).glob("*.jpg"))[:count]]


def _not_required(api: Api, schema: str, field: str) -> None:
    """The app's OpenAPI schema ``schema`` has ``field``, and does not require it."""
    described = api.http.app.openapi()["components"]["schemas"][schema]  # type: ignore[attr-defined]
    assert field in described["properties"] and field not in described.get("required", [])
    assert "replay" in described["properties"][field]["description"]


def test_a_replayed_album_erasure_fits_its_schema(api: Api, shared: Path) -> None:
    """Probe: a replay of DELETE /v1/albums/fam/people/George answered {"faces_deleted": 4,
    "photos_deleted": 3} (the person it erased is not kept), while AlbumEraseOut required ``person``:
    the answer broke the route's own OpenAPI schema."""
    album = f"fam-{api.state}"
    for photo in _photos(shared, "George_W_Bush", 2):
        assert api.http.post(f"/v1/albums/{album}/photos", files={"image": photo}).status_code == 200
    person = api.http.get(f"/v1/albums/{album}/people").json()["people"][0]["id"]
    assert api.http.patch(f"/v1/albums/{album}/people/{person}", json={"name": "George"}).status_code == 200
    erase = {"url": f"/v1/albums/{album}/people/George", "headers": api.key("album-erase")}
    first = api.http.delete(**erase)
    assert first.status_code == 200 and first.json()["person"] == "George", first.text
    replayed = api.http.delete(**erase)
    assert replayed.status_code == 200 and replayed.headers["idempotent-replayed"] == "true"
    assert "person" not in replayed.json()
    assert AlbumEraseOut.model_validate(replayed.json()).faces_deleted == first.json()["faces_deleted"]
    _not_required(api, "AlbumEraseOut", "person")


def test_a_replayed_member_erasure_fits_its_schema(api: Api, fast_analyzer, examples: Path,
                                                   tmp_path: Path) -> None:
    """The same for DELETE /v1/retail/stores/{store}/members/{member}: its replay leaves ``member``
    out, which RetailErasureOut required."""
    config = StoreConfig(id=f"schema-{api.state}", tenant="acme", cameras=[Camera(id="door", role="door")])
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
        pass
    members = f"/v1/retail/stores/{config.id}/members"
    lin = (examples / "examples" / "lin-manuel-miranda.png").read_bytes()
    consent = {"name": "Lin", "purposes": "face_pay,analytics", "payment_ref": "card-1"}
    enrolled = api.http.post(members, files={"image": lin}, data=consent)
    assert enrolled.status_code == 201, enrolled.text
    erase = {"url": f"{members}/{enrolled.json()['id']}", "headers": api.key("member-erase")}
    first = api.http.delete(**erase)
    assert first.status_code == 200 and first.json()["member"] == enrolled.json()["id"], first.text
    replayed = api.http.delete(**erase)
    assert replayed.status_code == 200 and replayed.headers["idempotent-replayed"] == "true"
    assert "member" not in replayed.json()
    assert RetailErasureOut.model_validate(replayed.json()).faces_deleted == 1
    _not_required(api, "RetailErasureOut", "member")


def test_the_cli_s_album_erasures_replace_the_answers_kept_in_redis(api: Api, shared: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Security probe: `faceatlas album erase "Zed Cli" -a <album> --tenant svc:acme --yes` left the
    tenant's audit trail naming no one, but a replay of the person's rename (Idempotency-Key) still
    answered {"id": "p1", "name": "Zed Cli"} from Redis, and so after `album delete <album>` for
    every call on the album: the API's and the console's erasures replace them, the CLI's did not.
    With the servers' Redis (FACEATLAS_REDIS_URL) the CLI replaces them there, as `gallery delete`
    does; a server without Redis keeps them in its own memory, out of the CLI's reach, and the CLI
    says so."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app as cli

    album = f"cli-{api.state}"
    for photo in _photos(shared, "George_W_Bush", 2) + _photos(shared, "Tony_Blair", 2):
        assert api.http.post(f"/v1/albums/{album}/photos", files={"image": photo}).status_code == 200
    people = api.http.get(f"/v1/albums/{album}/people").json()["people"]
    assert len(people) == 3, people
    erased, middle, kept = (person["id"] for person in people)  # most faces first: George_W_Bush's
    renames = {person: {"url": f"/v1/albums/{album}/people/{person}", "json": {"name": name},
                        "headers": api.key(f"{album}-rename-{person}")}
               for person, name in ((erased, "Zed Cli"), (kept, "Kit Kept"))}
    for rename in renames.values():
        assert api.http.patch(**rename).status_code == 200
    assert any(b"Zed Cli" in answer for answer in api.stored())
    if api.state == "redis":
        monkeypatch.setenv("FACEATLAS_REDIS_URL", api.http.app.state.settings.redis_url)  # type: ignore[attr-defined]
    else:
        monkeypatch.delenv("FACEATLAS_REDIS_URL", raising=False)
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(tmp_path / "indexes"))

    def run(*args: str) -> str:
        done = CliRunner().invoke(cli, ["album", *args, "--tenant", "svc:acme", "--db", api.database_url,
                                        "--yes", "--json"])
        assert done.exit_code == 0, done.output
        return done.stderr

    erasing = run("erase", "Zed Cli", "-a", album)
    assert erased not in {p["id"] for p in api.http.get(f"/v1/albums/{album}/people").json()["people"]}
    replay = api.http.patch(**renames[erased])
    assert replay.headers["idempotent-replayed"] == "true"
    again = api.http.patch(**renames[kept])  # another person's answer stays
    assert (again.status_code, again.json()["name"], again.headers["idempotent-replayed"]) == (200, "Kit Kept",
                                                                                               "true")
    if api.state == "memory":  # the documented gap: only the API (or a restart) reaches one server's memory
        assert replay.status_code == 200 and any(b"Zed Cli" in answer for answer in api.stored())
        assert "FACEATLAS_REDIS_URL" in erasing and "memory" in erasing
        return
    _erased(replay)
    assert not [answer for answer in api.stored() if b"Zed Cli" in answer]
    assert erasing == ""

    face = api.http.get(f"/v1/albums/{album}/people/{middle}/faces").json()["faces"][0]["id"]
    reject = {"url": f"/v1/albums/{album}/faces/{face}/reject", "headers": api.key(f"{album}-reject")}
    assert api.http.post(**reject).status_code == 200  # its answer is the face
    assert run("delete-face", str(face), "-a", album) == ""
    _erased(api.http.post(**reject))

    assert run("delete", album) == ""  # the whole album: every answer of a call on it
    _erased(api.http.patch(**renames[kept]))
    assert not [answer for answer in api.stored() if b"Kit Kept" in answer or f"/v1/albums/{album}".encode() in answer]
