"""The store's catalogue: products and their prices (integer minor units), in ``retail_products``.

The config's ``products`` seed the catalogue when the store opens, but only SKUs the store has
never had: after that the owner manages it (REST ``/v1/retail/stores/{id}/products``, or
``store.products``), and a product deleted there does not come back from the config. A price
change applies to the picks after it: each cart line keeps the price its items were picked at,
and deleting a product leaves the carts that hold it as they are (the shopper pays the price
picked; the SKU can still be put back, but no longer picked).

SKUs and names are kept composed (NFC, :func:`~faceatlas.apps.retail.config.check_sku`): a SKU
typed with a precomposed letter or with a combining accent is one product, and a lookup finds it
either way (a SKU kept before in another form too: :func:`~faceatlas.gallery.name_forms`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.apps.retail.config import PRICE_RULE, Product, check_product_name, check_sku, valid_price
from faceatlas.apps.retail.db import CartItem, CatalogueProduct, Visit, utcnow
from faceatlas.errors import AlreadyExists, InvalidArgument, NotFound
from faceatlas.gallery import name_forms, name_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProductRemoval:
    """What deleting a product did: ``open_carts``, the open visits whose cart still holds it
    (they keep it at the price picked)."""

    sku: str
    open_carts: int


class Catalogue:
    """The products of one store."""

    def __init__(self, store_id: str, sessions: sessionmaker[Session]) -> None:
        self.store_id = store_id
        self._sessions = sessions

    def seed(self, products: Iterable[Product]) -> list[str]:
        """Add the products whose SKU the store never had (deleted ones included); returns their
        SKUs. A config product that differs from the catalogue's is logged, not applied."""
        added: list[str] = []
        with self._sessions.begin() as session:
            rows = {name_key(row.sku): row for row in session.scalars(
                select(CatalogueProduct).where(CatalogueProduct.store_id == self.store_id))}
            for product in products:
                row = rows.get(name_key(product.sku))
                if row is None:
                    session.add(CatalogueProduct(store_id=self.store_id, sku=product.sku, name=product.name,
                                                 price_cents=product.price_cents, updated_at=utcnow()))
                    added.append(product.sku)
                elif row.deleted_at is None and (row.name, row.price_cents) != (product.name, product.price_cents):
                    log.warning("store %s: product %s of the config differs from the catalogue (%s, %d cents); "
                                "the catalogue is kept (change it over the API)", self.store_id, product.sku,
                                row.name, row.price_cents)
        return added

    def list(self) -> list[Product]:
        """The products on sale, by SKU."""
        with self._sessions() as session:
            rows = session.scalars(select(CatalogueProduct).where(
                CatalogueProduct.store_id == self.store_id, CatalogueProduct.deleted_at.is_(None))
                .order_by(CatalogueProduct.sku))
            return [_product(row) for row in rows]

    def get(self, sku: str) -> Product:
        """The product ``sku`` on sale (:class:`NotFound` when unknown or deleted)."""
        with self._sessions() as session:
            return _product(self._row(session, sku))

    def create(self, sku: str, name: str, price_cents: int) -> Product:
        """Put a new product on sale (:class:`AlreadyExists` when the SKU is on sale already; a
        deleted SKU may be created again)."""
        sku, name = check_sku(sku), check_product_name(name)
        _check_price(price_cents)
        try:
            with self._sessions.begin() as session:
                query = select(CatalogueProduct).where(CatalogueProduct.store_id == self.store_id,
                                                       CatalogueProduct.sku.in_(name_forms(sku)))
                row = _one(session.scalars(query).all(), sku)
                if row is not None and row.deleted_at is None:
                    raise AlreadyExists(f"store '{self.store_id}' already sells product '{sku}'")
                if row is None:
                    row = CatalogueProduct(store_id=self.store_id, sku=sku)
                    session.add(row)
                row.name, row.price_cents, row.updated_at, row.deleted_at = name, price_cents, utcnow(), None
                session.flush()
                return _product(row)
        except IntegrityError as exc:  # a concurrent create of the same SKU won
            raise AlreadyExists(f"store '{self.store_id}' already sells product '{sku}'") from exc

    def update(self, sku: str, *, name: str | None = None, price_cents: int | None = None) -> Product:
        """Rename or reprice a product on sale; a new price applies to the picks after it."""
        if name is None and price_cents is None:
            raise InvalidArgument("nothing to change: give a name or a price_cents")
        if name is not None:
            name = check_product_name(name)
        if price_cents is not None:
            _check_price(price_cents)
        with self._sessions.begin() as session:
            row = self._row(session, sku, lock=True)
            if name is not None:
                row.name = name
            if price_cents is not None:
                row.price_cents = price_cents
            row.updated_at = utcnow()
            return _product(row)

    def delete(self, sku: str, *, at: datetime | None = None) -> ProductRemoval:
        """Take a product off sale. Carts that hold it keep it at the price picked (the shopper
        walked off with it); it can no longer be picked, only put back."""
        with self._sessions.begin() as session:
            row = self._row(session, sku, lock=True)
            row.deleted_at = row.updated_at = at or utcnow()
            sku = row.sku
            held = (select(CartItem.visit_id).join(Visit, Visit.id == CartItem.visit_id)
                    .where(Visit.store_id == self.store_id, Visit.exit_event_id.is_(None),
                           CartItem.sku.in_(name_forms(sku)))
                    .group_by(CartItem.visit_id).having(func.sum(CartItem.quantity) > 0))
            open_carts = int(session.scalar(select(func.count()).select_from(held.subquery())) or 0)
        return ProductRemoval(sku, open_carts)

    def _row(self, session: Session, sku: str, *, lock: bool = False) -> CatalogueProduct:
        query = select(CatalogueProduct).where(CatalogueProduct.store_id == self.store_id,
                                               CatalogueProduct.sku.in_(name_forms(sku)),
                                               CatalogueProduct.deleted_at.is_(None))
        row = _one(session.scalars(query.with_for_update() if lock else query).all(), sku)
        if row is None:
            raise NotFound(f"store '{self.store_id}' sells no product '{sku}'")
        return row


def _product(row: CatalogueProduct) -> Product:
    return Product.model_validate({"sku": row.sku, "name": row.name, "price_cents": row.price_cents},
                                  context={"stored": True})


def _one(rows: Sequence[CatalogueProduct], sku: str) -> CatalogueProduct | None:
    """The row of ``sku`` among ``rows`` (its forms): the one spelt as given, else any."""
    return next((row for row in rows if row.sku == sku), rows[0] if rows else None)


def _check_price(price_cents: int) -> None:
    if not valid_price(price_cents):
        raise InvalidArgument(PRICE_RULE)
