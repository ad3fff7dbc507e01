"""Face ids are never reused (SQLite AUTOINCREMENT), and app-owned tenants get their own space.

A reused face id would let a stale index copy keep a deleted face's vector under a new face's id.
Retail stores' galleries move from ``retail-<store>`` to ``app:retail:<store>``, a name the
service's tenant ids (no colon) cannot take.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table("faces", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass
    op.execute(sa.text("UPDATE tenants SET name = 'app:retail:' || substr(name, 8) WHERE name LIKE 'retail-%'"))


def downgrade() -> None:
    op.execute(sa.text("UPDATE tenants SET name = 'retail-' || substr(name, 12) WHERE name LIKE 'app:retail:%'"))
