"""The service's vector backend chosen in code: ``create_app(storage_settings=...)`` puts the
faces a client enrols into Milvus (Lite, real), with no ``FACEATLAS_VECTOR_BACKEND`` set."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceatlas.db import create_database_engine
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import StorageSettings

pymilvus = pytest.importorskip("pymilvus")


def test_create_app_takes_the_storage_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_analyzer,
                                               examples: Path) -> None:
    from milvus_lite.server_manager import server_manager_instance

    monkeypatch.delenv("FACEATLAS_VECTOR_BACKEND", raising=False)
    lite = tmp_path / "milvus" / "m.db"
    url = f"sqlite:///{tmp_path / 'api.db'}"
    engine = create_database_engine(url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    token = accounts.create_key("acme", ["admin"], rate_per_second=500, burst=500).token
    engine.dispose()
    storage = StorageSettings(database_url=url, vector_backend="milvus", milvus_uri=str(lite))
    photo = examples / "tests" / "test_images" / "obama.jpg"
    try:
        with TestClient(create_app(analyzer=fast_analyzer, storage_settings=storage),
                        headers={"Authorization": f"Bearer {token}"}) as http:
            assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
            enrolled = http.post("/v1/collections/staff/subjects/obama/faces",
                                 files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
            assert enrolled.status_code == 201, enrolled.text
            face_id = enrolled.json()["face_ids"][0]
        client = pymilvus.MilvusClient(str(lite))
        try:
            held = [int(row["id"]) for name in client.list_collections() if not name.endswith("_revisions")
                    for row in client.query(name, filter="id >= 0", output_fields=["id"], consistency_level="Strong")]
        finally:
            client.close()
        assert held == [face_id]
    finally:
        server_manager_instance.release_server(str(lite))
