"""index on kyc_fingerprints.at: the replay check and the purge of every decision read by time

Every decision purges the fingerprints older than the replay window (``at <= cutoff``) and looks
for replays among the recent ones (``at > since``); without an index both scan the whole table,
which holds every selfie of the last ``replay_days`` (30 by default).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kyc_fingerprints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kyc_fingerprints_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("kyc_fingerprints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kyc_fingerprints_at"))
