"""web console sessions

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
    op.create_table(
        "svc_console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["svc_api_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    with op.batch_alter_table("svc_console_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_svc_console_sessions_key_id", ["key_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("svc_console_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_svc_console_sessions_key_id")
    op.drop_table("svc_console_sessions")
