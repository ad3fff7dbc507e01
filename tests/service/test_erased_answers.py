"""The stored answers of ``Idempotency-Key`` calls after an erasure, over SQLite, with the keys in
this process's memory and in a real Redis: a deleted collection's create and import answers are
replayed as the 404 that names nothing (not its name and metadata)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from faceatlas.db import create_database_engine
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import ServiceSettings

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
def api(request, redis_server, new_database, fast_analyzer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("erased")
    redis_server.flush()
    with new_database("sqlite", folder) as url:
        engine = create_database_engine(url)
        migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("acme")
        admin = accounts.create_key("acme", ["admin"], rate_per_second=500, burst=500).token
        settings = ServiceSettings(database_url=url, index_dir=folder / "indexes", pack="scrfd-mbf", workers=1,
                                   redis_url=redis_server.url if request.param == "redis" else None)
        with TestClient(create_app(settings, analyzer=fast_analyzer),
                        headers={"Authorization": f"Bearer {admin}"}) as http:
            yield Api(http, url, request.param)
        engine.dispose()


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

