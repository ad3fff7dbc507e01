"""album absorbed person ids: the ids gone into a person, erased with it

Erasing a person who had absorbed another (a merge, a scan joining two people) left what named the
absorbed id: the stored answer of its rename (its name with it) and its audit records.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "album_absorbed",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("album_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("absorbed", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["album_id"], ["album_albums.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("album_absorbed", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_album_absorbed_album_id"), ["album_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_album_absorbed_person_id"), ["person_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("album_absorbed", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_album_absorbed_person_id"))
        batch_op.drop_index(batch_op.f("ix_album_absorbed_album_id"))
    op.drop_table("album_absorbed")
