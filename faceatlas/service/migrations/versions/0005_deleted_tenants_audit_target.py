"""deleted tenants' ids are kept (never given again); audit targets hold the longest a route builds

A deleted tenant's usage rows stay under its id (the bill): a new tenant of that id inherited them
(its monthly quota spent by the old calls) and the old tenant's audit trail. ``svc_deleted_tenants``
keeps the ids of deleted tenants, and ``create_tenant`` refuses them; the tenants deleted before
this revision are the ids of usage or audit rows that no tenant holds.

``svc_audit.target`` was 300 characters: ``{collection}/{subject}`` (200 + 1 + 200) and an album's
``{album}/{person}`` (200 + 1 + 400) did not fit, and on PostgreSQL the audit failed after the
change was made (a 500, the call unbilled and unaudited). Now 601
(``service.db.AUDIT_TARGET_MAX_LENGTH``).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "svc_deleted_tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(sa.text(
        "INSERT INTO svc_deleted_tenants (id, deleted_at) "
        "SELECT tenant_id, MAX(at) FROM ("
        " SELECT tenant_id, at FROM svc_usage UNION ALL"
        " SELECT tenant_id, at FROM svc_audit WHERE tenant_id IS NOT NULL"
        ") AS gone WHERE tenant_id NOT IN (SELECT id FROM svc_tenants) GROUP BY tenant_id"))
    with op.batch_alter_table("svc_audit", schema=None) as batch_op:
        batch_op.alter_column("target", existing_type=sa.String(length=300), type_=sa.String(length=601),
                              existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("svc_audit", schema=None) as batch_op:
        batch_op.alter_column("target", existing_type=sa.String(length=601), type_=sa.String(length=300),
                              existing_nullable=False)
    op.drop_table("svc_deleted_tenants")
