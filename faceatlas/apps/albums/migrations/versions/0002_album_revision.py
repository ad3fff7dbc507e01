"""album revision: goes up with every change to an album's placed faces

A process keeps an album's placed faces (vectors, people, FAISS index) in memory between uploads
and reloads them when the revision it loaded at is no longer the album's (another process placed
faces, corrected, erased or re-clustered).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("album_albums", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("album_albums", schema=None) as batch_op:
        batch_op.drop_column("revision")
