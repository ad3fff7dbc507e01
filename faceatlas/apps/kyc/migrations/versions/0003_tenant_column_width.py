"""kyc_sessions.tenant and kyc_fingerprints.tenant hold 200 characters, not 64

The service keeps a tenant's sessions as ``svc:<tenant id>``, and tenant ids have up to 64
characters: on PostgreSQL a tenant id of 61 to 64 characters failed every KYC session (SQLite
does not enforce the width). 200 is the gallery's width of a tenant space.

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
    for table in ("kyc_sessions", "kyc_fingerprints"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("tenant", existing_type=sa.String(64), type_=sa.String(200), existing_nullable=False)


def downgrade() -> None:
    for table in ("kyc_sessions", "kyc_fingerprints"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("tenant", existing_type=sa.String(200), type_=sa.String(64), existing_nullable=False)
