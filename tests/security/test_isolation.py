"""Tenants are separated by construction (issue 15, item 5): a service tenant, whatever its id,
reaches neither the CLI's galleries nor an app's (a retail store's members)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from faceatlas.apps.retail import Camera, Product, RetailStore, StoreConfig
from faceatlas.db import create_database_engine
from faceatlas.errors import InvalidArgument
from faceatlas.gallery import Gallery
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import ServiceSettings


@pytest.mark.parametrize("kind", ["sqlite"])
def test_service_tenants_reach_no_cli_or_app_gallery(kind, new_database, fast_analyzer, tmp_path) -> None:
    with new_database(kind, tmp_path) as url:
        with Gallery.open(url, index_dir=tmp_path / "indexes") as cli_gallery:  # the CLI's tenant "default"
            cli_gallery.create_collection("cli-people", "scrfd-mbf")
        RetailStore.open(StoreConfig(
            id="shop1", tenant="owner", cameras=[Camera(id="in", role="entrance")],
            products=[Product(sku="apple", name="Apple", price_cents=50)]), fast_analyzer, url,
                         index_dir=tmp_path / "indexes").close()  # its members collection
        engine = create_database_engine(url)
        migrate(engine)
        accounts = Accounts(engine)
        keys = {}
        for tenant in ("owner", "retail-shop1"):  # "default", the CLI's space, is no service tenant's id
            accounts.create_tenant(tenant)
            keys[tenant] = accounts.create_key(tenant, ["admin"]).token
        settings = ServiceSettings(database_url=url, index_dir=tmp_path / "indexes", pack="scrfd-mbf", workers=1)
        with TestClient(create_app(settings, analyzer=fast_analyzer)) as http:
            for tenant, key in keys.items():
                listed = http.get("/v1/collections", headers={"Authorization": f"Bearer {key}"})
                assert listed.status_code == 200, listed.text
                assert listed.json()["collections"] == [], f"tenant {tenant} sees {listed.json()}"
                for name in ("cli-people", "members"):
                    answer = http.get(f"/v1/collections/{name}", headers={"Authorization": f"Bearer {key}"})
                    assert answer.status_code == 404, (tenant, name, answer.text)
        engine.dispose()


@pytest.mark.parametrize("tenant_id", ["svc:acme", "app:retail:shop1", "", "a" * 65, "bad\x00id", "a/b", "default",
                                       "Default"])
def test_tenant_ids_that_could_collide_are_refused(tenant_id, new_database, tmp_path) -> None:
    with new_database("sqlite", tmp_path) as url:
        engine = create_database_engine(url)
        migrate(engine)
        with pytest.raises(InvalidArgument):
            Accounts(engine).create_tenant(tenant_id)
        engine.dispose()
