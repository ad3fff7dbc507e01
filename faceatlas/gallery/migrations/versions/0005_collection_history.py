"""Each revision of a collection gets a random history token (``collection_revisions``), which
an index copy (an index file, the revision stored in Milvus) records beside its revision number.

A database restored from a backup moves a collection's revision back, and the writes made after
the restore reach the same numbers again with other faces under reused face ids: an index copy
trusted for its revision number alone answered a search with the wrong person, missed a person the
database holds, and kept an erased person's vector. A copy whose token is not the database's for
its revision is rebuilt from the database instead.

The upgrade gives each collection a token for its current revision, which no index copy written
before it records: each is rebuilt once, at its first load. The downgrade drops the table (tokens
only; no subject, face or revision is lost).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "collection_revisions",
        sa.Column("collection_id", sa.Integer(), sa.ForeignKey("collections.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("revision", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("history", sa.String(32), nullable=False),
    )
    rows = op.get_bind().execute(sa.text("SELECT id, revision FROM collections")).all()
    if rows:
        op.bulk_insert(table, [{"collection_id": row[0], "revision": row[1], "history": uuid.uuid4().hex}
                               for row in rows])


def downgrade() -> None:
    op.drop_table("collection_revisions")
