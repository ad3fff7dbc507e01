"""album people: an id is never given twice (SQLite AUTOINCREMENT)

Without AUTOINCREMENT SQLite gives the highest id again once its row is gone: after a merge removed
the newest person, the next split named its new person as the removed one, so a reference kept
to it (a link, a script, the gallery subject ``p<id>``) silently meant someone else. PostgreSQL's
sequences never give an id twice: nothing to do there.

The table is rebuilt with AUTOINCREMENT, its rows copied with their ids. Dropping the old table runs
the faces' ``ON DELETE SET NULL`` (foreign keys are on), so each face's person is kept aside first
and put back after, in the same transaction.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("CREATE TEMPORARY TABLE album_faces_people AS "
               "SELECT id, person_id FROM album_faces WHERE person_id IS NOT NULL")
    op.create_table(
        "album_people_new",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("album_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=True),
        sa.ForeignKeyConstraint(["album_id"], ["album_albums.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.execute("INSERT INTO album_people_new (id, album_id, name) SELECT id, album_id, name FROM album_people")
    op.drop_table("album_people")
    op.rename_table("album_people_new", "album_people")
    op.create_index("ix_album_people_album_id", "album_people", ["album_id"], unique=False)
    op.execute("UPDATE album_faces SET person_id = (SELECT kept.person_id FROM album_faces_people AS kept "
               "WHERE kept.id = album_faces.id) WHERE id IN (SELECT id FROM album_faces_people)")
    op.execute("DROP TABLE album_faces_people")


def downgrade() -> None:
    """Ids that are never given again stay so (nothing relies on their being given again)."""
