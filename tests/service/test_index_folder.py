"""One index folder per database for every door: `faceatlas serve` kept a SQLite database's index
files under ~/.local/share/faceatlas/indexes, the CLI beside the database (`<db>.indexes`): one
collection had two copies on disk, and a delete through one door left its vectors in the other's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from faceatlas.cli.main import app as cli
from faceatlas.client import FaceAtlasClient
from faceatlas.db import create_database_engine
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import ServiceSettings


def _face_ids_on_disk(folder: Path) -> set[int]:
    ids: set[int] = set()
    for path in folder.rglob("collection-*.npz"):
        with np.load(path, allow_pickle=False) as stored:
            ids.update(int(i) for i in stored["ids"])
    return ids


def test_serve_and_the_cli_keep_one_index_copy_and_a_delete_through_either_leaves_none(
        examples: Path, fast_analyzer, tmp_path: Path, monkeypatch) -> None:
    photos = examples / "tests" / "test_images"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # where serve's own default folder was
    database = tmp_path / "faceatlas.db"
    url = f"sqlite:///{database}"
    engine = create_database_engine(url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    token = accounts.create_key("acme", ["admin"], rate_per_second=500, burst=500).token
    settings = ServiceSettings(database_url=url, pack="scrfd-mbf", workers=1)  # no index folder given
    with TestClient(create_app(settings, analyzer=fast_analyzer)) as http:
        client = FaceAtlasClient("http://testserver", token, http=http)
        client.create_collection("staff")
        client.enrol("staff", "obama", photos / "obama.jpg")
        client.enrol("staff", "biden", photos / "biden.jpg")
        client.search("staff", photos / "obama2.jpg")  # the server's index, written
        beside = tmp_path / "faceatlas.db.indexes"
        assert len(_face_ids_on_disk(beside)) == 2
        assert not (tmp_path / "home").exists() or not list((tmp_path / "home").rglob("*.npz"))
        runner = CliRunner()
        found = runner.invoke(cli, ["gallery", "search", "staff", str(photos / "obama2.jpg"), "--db", url,
                                    "--tenant", "svc:acme", "--json"])
        assert found.exit_code == 0, found.output
        deleted = runner.invoke(cli, ["gallery", "delete", "staff", "--subject", "obama", "--db", url,
                                      "--tenant", "svc:acme", "--yes"])
        assert deleted.exit_code == 0, deleted.output
        assert len(_face_ids_on_disk(beside)) == 1  # the CLI's delete rewrote the one copy there is
        client.delete_collection("staff")
        assert _face_ids_on_disk(tmp_path) == set()
    engine.dispose()
