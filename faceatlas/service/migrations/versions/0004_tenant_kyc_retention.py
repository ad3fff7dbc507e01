"""tenant setting: days a verification's reference face images are kept (0: none)

Before, one service-wide setting (FACEATLAS_KYC_RETENTION_DAYS) applied to every tenant; now each
tenant's admin sets its own, and every existing tenant starts at 0 (no face image kept).

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
    with op.batch_alter_table("svc_tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kyc_retention_days", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    # dropped in place (ALTER TABLE ... DROP COLUMN, SQLite 3.35+): batch mode copied the table on
    # SQLite, and the old table's drop cascaded to every key of every tenant (foreign keys are on)
    op.drop_column("svc_tenants", "kyc_retention_days")
