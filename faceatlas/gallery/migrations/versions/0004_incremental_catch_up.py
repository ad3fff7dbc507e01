"""Each face records the collection revision that added or last moved it, and each collection the
last revision that removed a face: a process's index behind the database is caught up by reading
only the faces changed since its revision (a full diff of face ids only after a removal), not every
face id of the collection (seconds and hundreds of MB at millions of faces, on the first search
after each enrolment made by another process).

The backfill writes no face row (a rewrite of every face of a large PostgreSQL gallery in one
transaction, at start): faces keep revision 0 and each collection's last removal is its current
revision, so an index file written before this upgrade (at an older revision) is caught up once
by the full diff of face ids, then incrementally. Every server must run this version once the
database is upgraded: an older one writes faces at revision 0 and removes them without moving
``removed_revision``, which the catch-up of the newer ones would not see.

The downgrade drops the columns in place (SQLite 3.35+ and PostgreSQL): a batch copy of the
``collections`` table on SQLite cascaded to every subject and face (foreign keys on), and lost
the faces' AUTOINCREMENT.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("faces", sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("collections", sa.Column("removed_revision", sa.Integer(), nullable=False, server_default="0"))
    op.execute(sa.text("UPDATE collections SET removed_revision = revision"))
    op.create_index("ix_faces_collection_id_revision", "faces", ["collection_id", "revision"])


def downgrade() -> None:
    op.drop_index("ix_faces_collection_id_revision", table_name="faces")
    op.drop_column("faces", "revision")
    op.drop_column("collections", "removed_revision")
