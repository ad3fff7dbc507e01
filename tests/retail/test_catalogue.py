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


def test_a_sku_typed_with_a_combining_accent_is_the_sku_typed_composed(store: RetailStore) -> None:
    """"Jos\\u00e9" and "Jose\\u0301" look the same: they made two products a till could not tell
    apart. A SKU and a product's name are kept composed (NFC, the gallery's rule for names), so the
    second is the first (409), and every lookup finds it by either form; a pick of one and a put-back
    of the other are one cart line."""
    decomposed, composed = "Jose\u0301", "Jos\u00e9"
    product = store.products.create(decomposed, f"  Caf{'e'}\u0301 {decomposed} ", 300)
    assert (product.sku, product.name) == (composed, f"Caf\u00e9 {composed}")  # composed, stripped
    with pytest.raises(AlreadyExists):
        store.products.create(composed, "Other", 1)
    assert store.products.get(composed) == store.products.get(decomposed) == product
    assert store.products.update(decomposed, name=decomposed).name == composed
    with store._sessions.begin() as session:
        visit = retail_db.Visit(store_id=store.config.id, entry_at=retail_db.utcnow())
        session.add(visit)
        session.flush()
        visit_id = visit.id
    store.add_item(visit_id, decomposed, 2)
    store.add_item(visit_id, composed, -1)
    assert [(line.sku, line.quantity) for line in store.cart(visit_id).lines] == [(composed, 1)]
    assert store.products.delete(decomposed).open_carts == 1
    with pytest.raises(NotFound):
        store.products.get(composed)


@pytest.mark.parametrize("hidden", ["\x85", "\u2028", "\u202e", "\u2066", "\n"])
def test_a_product_name_or_sku_with_a_control_character_is_refused(store: RetailStore, hidden: str) -> None:
    """A product's name is one line, as a subject's: a C1 control, a line separator or a bidi
    override was stored (only NUL was refused) and shown raw by the console and the till."""
    with pytest.raises(InvalidArgument, match="product name is at most 400 characters without control"):
        store.products.create("jam", f"Jam{hidden}", 100)
    with pytest.raises(InvalidArgument, match="product name is at most 400 characters without control"):
        store.products.update("milk", name=f"Milk{hidden}")
    with pytest.raises(InvalidArgument, match="a SKU is"):
        store.products.create(f"jam{hidden}x", "Jam", 100)
    assert [(p.sku, p.name) for p in store.products.list()] == [("apple", "Apple"), ("milk", "Milk")]


def test_a_store_file_s_skus_and_camera_ids_compare_composed() -> None:
    """Two products (or cameras) of a store file whose ids look the same are duplicates; a file's
    SKU and product name are kept composed, and a camera is found by either form of its id."""
    from pydantic import ValidationError

    from faceatlas.apps.retail import Camera

    decomposed, composed = "Jose\u0301", "Jos\u00e9"
    with pytest.raises(ValidationError, match="duplicate product ids"):
        StoreConfig(id="s", cameras=[], products=[Product(sku=decomposed, name="A", price_cents=1),
                                      Product(sku=composed, name="B", price_cents=1)])
    with pytest.raises(ValidationError, match="duplicate camera ids"):
        StoreConfig(id="s", cameras=[Camera(id=decomposed, role="entrance"), Camera(id=composed, role="exit")])
    config = StoreConfig(id="s", cameras=[Camera(id=decomposed, role="checkout")],
                         products=[Product(sku=decomposed, name=f" {decomposed} ", price_cents=1)])
    assert (config.products[0].sku, config.products[0].name) == (composed, composed)
    assert config.product(decomposed) == config.product(composed)
    assert config.camera(composed).id == decomposed  # the video layer names it composed
    assert config.camera(decomposed).video_config("0").name == composed
    # a store saved before the rule with both forms (distinct as written then) still loads: a
    # refusal here failed every call on that store
    twins = {"id": "s", "cameras": [{"id": decomposed, "role": "entrance"}, {"id": composed, "role": "exit"}],
             "products": [{"sku": decomposed, "name": "A", "price_cents": 1},
                          {"sku": composed, "name": "B", "price_cents": 1}]}
    stored = StoreConfig.model_validate(twins, context={"stored": True})
    assert [p.sku for p in stored.products] == [decomposed, composed]
    with pytest.raises(ValidationError, match="control characters"):
        Product(sku="jam", name="Jam\u202e", price_cents=1)
