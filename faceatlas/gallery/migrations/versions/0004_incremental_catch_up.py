"""Each face records the collection revision that added or last moved it, and each collection the
last revision that removed a face: a process's index behind the database is caught up by reading
only the faces changed since its revision (a full diff of face ids only after a removal), not every
face id of the collection (seconds and hundreds of MB at millions of faces, on the first search
after each enrolment made by another process).

The backfill is conservative: every face takes its collection's current revision, and so does the
collection's last removal, so an index file written before this upgrade is caught up once by the
full diff of face ids, then incrementally.

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
    op.execute(sa.text("UPDATE faces SET revision = (SELECT collections.revision FROM collections "
                       "WHERE collections.id = faces.collection_id)"))
    op.execute(sa.text("UPDATE collections SET removed_revision = revision"))
    op.create_index("ix_faces_collection_id_revision", "faces", ["collection_id", "revision"])


def downgrade() -> None:
    op.drop_index("ix_faces_collection_id_revision", table_name="faces")
    with op.batch_alter_table("faces") as batch:
        batch.drop_column("revision")
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("removed_revision")
