"""tenant setting: the operator's ceiling on the calls/s of a tenant's keys, summed

Before, one server-wide setting (FACEATLAS_MAX_KEY_RATE_PER_TENANT) bounded every tenant, and a
tenant's admin issued itself keys up to it; now the operator sets a tenant's own (``faceatlas admin
tenant create/update --max-rate N``). Every existing tenant starts without one: the setting's holds.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("svc_tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_key_rate", sa.Float(), nullable=True))


def downgrade() -> None:
    # dropped in place (ALTER TABLE ... DROP COLUMN, SQLite 3.35+): batch mode copied the table on
    # SQLite, and the old table's drop cascaded to every key of every tenant (foreign keys are on)
    op.drop_column("svc_tenants", "max_key_rate")
