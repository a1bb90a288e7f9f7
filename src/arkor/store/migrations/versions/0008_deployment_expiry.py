"""Deployments that expire: after ``expires_at`` the edge answers 404 and a sweep deletes them.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from arkor.store.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deployments", sa.Column("expires_at", UTCDateTime()))
    op.create_index("ix_deployments_expires_at", "deployments", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_deployments_expires_at", table_name="deployments")
    op.drop_column("deployments", "expires_at")
