"""The service's tenants get their own gallery space: gallery tenant ``svc:<tenant id>``.

Before, a service tenant used the gallery tenant of its bare id, so a tenant named ``default``
saw the CLI's collections and one named ``retail-<store>`` a store's members. Existing service
tenants' collections move to the new name (``default`` and ``retail-*`` stay where they are:
those were never the service's).

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
    bind = op.get_bind()
    if not sa.inspect(bind).has_table("tenants"):
        return  # a fresh database: the gallery's tables come later
    op.execute(sa.text(
        "UPDATE tenants SET name = 'svc:' || name WHERE name IN (SELECT id FROM svc_tenants) "
        "AND name <> 'default' AND name NOT LIKE 'retail-%' "
        "AND 'svc:' || name NOT IN (SELECT name FROM tenants)"))


def downgrade() -> None:
    pass
