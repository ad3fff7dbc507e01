"""an index on the audit trail's (tenant, target)

Erasing a subject rewrites the audit records that name it (``Accounts.erase_subject``): matched by
target, they were found by a scan of all the tenant's records (its only index was (tenant, time)),
90 ms a deletion at 315,000 records, growing with the trail.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_svc_audit_tenant_target", "svc_audit", ["tenant_id", "target"])


def downgrade() -> None:
    op.drop_index("ix_svc_audit_tenant_target", table_name="svc_audit")
