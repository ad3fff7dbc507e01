"""store config, zone tracks and aggregated demographics

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
    with op.batch_alter_table("retail_stores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config", sa.JSON(), nullable=True))
    op.create_table(
        "retail_zone_tracks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.String(length=100), nullable=False),
        sa.Column("zone", sa.String(length=100), nullable=False),
        sa.Column("camera", sa.String(length=100), nullable=False),
        sa.Column("track", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("dwell_s", sa.Float(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["visit_id"], ["retail_visits.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_retail_zone_tracks_store_at", "retail_zone_tracks", ["store_id", "at"], unique=False)
    op.create_table(
        "retail_demographics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.String(length=100), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("age_band", sa.String(length=20), nullable=False),
        sa.Column("gender", sa.String(length=20), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("store_id", "hour", "age_band", "gender"),
    )


def downgrade() -> None:
    op.drop_table("retail_demographics")
    op.drop_index("ix_retail_zone_tracks_store_at", table_name="retail_zone_tracks")
    op.drop_table("retail_zone_tracks")
    with op.batch_alter_table("retail_stores", schema=None) as batch_op:
        batch_op.drop_column("config")
