"""the store catalogue as a table (managed over REST), seeded from the saved store configs

Revision ID: 0004
Revises: 0003
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    products = op.create_table(
        "retail_products",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.String(length=100), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("store_id", "sku"),
    )
    stores = sa.table("retail_stores", sa.column("id", sa.String()), sa.column("config", sa.JSON()))
    bind = op.get_bind()
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for store_id, config in bind.execute(sa.select(stores.c.id, stores.c.config)):
        for product in (config or {}).get("products", []):
            rows.append({"store_id": store_id, "sku": product["sku"], "name": product["name"],
                         "price_cents": product["price_cents"], "updated_at": now, "deleted_at": None})
    if rows:
        op.bulk_insert(products, rows)


def downgrade() -> None:
    op.drop_table("retail_products")
