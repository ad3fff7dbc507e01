"""The catalogue table: revision 0004 copies the products of the store configs saved before it,
and the config seeds only SKUs a store never had."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

import faceatlas.apps.retail.db as retail_db
from faceatlas.apps.retail import Catalogue, Product, RetailStore, StoreConfig
from faceatlas.db import create_database_engine, upgrade
from faceatlas.errors import AlreadyExists, InvalidArgument, NotFound


def test_revision_0004_copies_the_saved_catalogues(db_url: str) -> None:
    engine = create_database_engine(db_url)
    try:
        upgrade(engine, Path(retail_db.__file__).parent / "migrations", "0003")
        saved = '{"id": "old", "cameras": [], "products": [{"sku": "tea", "name": "Tea", "price_cents": 300}]}'
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO retail_stores (id, tenant, name, config) VALUES "
                                    "('old', 'acme', '', :config), ('bare', 'acme', '', NULL)"), {"config": saved})
        retail_db.migrate(engine)
        catalogue = Catalogue("old", sessionmaker(engine))
        assert catalogue.list() == [Product(sku="tea", name="Tea", price_cents=300)]
        assert Catalogue("bare", sessionmaker(engine)).list() == []
    finally:
        engine.dispose()


def test_the_config_seeds_only_skus_the_store_never_had(store: RetailStore, config: StoreConfig,
                                                        fast_analyzer, db_url: str, tmp_path: Path) -> None:
    assert [p.sku for p in store.products.list()] == ["apple", "milk"]
    store.products.update("milk", price_cents=99)
    store.products.delete("apple")
    with pytest.raises(NotFound):
        store.products.delete("apple")
    with pytest.raises(AlreadyExists):
        store.products.create("milk", "Milk", 1)
    for bad in (-1, True, 10_000_001):
        with pytest.raises(InvalidArgument):
            store.products.create("jam", "Jam", bad)
    with pytest.raises(InvalidArgument):
        store.products.create("a/b", "Slash", 1)
    config.products.append(Product(sku="bread", name="Bread", price_cents=200))
    with RetailStore.open(config, fast_analyzer, db_url, index_dir=tmp_path / "again") as reopened:
        assert [(p.sku, p.price_cents) for p in reopened.products.list()] == [("bread", 200), ("milk", 99)]
