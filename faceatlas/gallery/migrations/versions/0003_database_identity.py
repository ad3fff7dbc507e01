"""The database's id: one row in ``gallery_identity``, made here once (a random UUID).

A copy of the galleries' vectors kept outside the database (Milvus) is named by it: the default
collection prefix is derived from it, and Milvus records which database a prefix belongs to, so a
second database on the same Milvus is given, or refused, a prefix of its own instead of dropping
the first one's copy (the URL is no identity: it changes with host names and mounts).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "gallery_identity",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("database_id", sa.String(32), nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "database_id": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("gallery_identity")
