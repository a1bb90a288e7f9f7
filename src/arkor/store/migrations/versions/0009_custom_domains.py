"""Custom domains: a deployment's own host names, served once a DNS TXT record verifies them.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from arkor.store.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "custom_domains",
        sa.Column("domain", sa.String(253), primary_key=True),
        sa.Column(
            "deployment_id", sa.String(36),
            sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False,
        ),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("verified_at", UTCDateTime()),
        sa.Column("last_checked_at", UTCDateTime()),
        sa.Column("last_error", sa.String(500)),
    )
    op.create_index("ix_custom_domains_deployment_id", "custom_domains", ["deployment_id"])
    op.create_index("ix_custom_domains_last_checked_at", "custom_domains", ["last_checked_at"])


def downgrade() -> None:
    op.drop_index("ix_custom_domains_last_checked_at", table_name="custom_domains")
    op.drop_index("ix_custom_domains_deployment_id", table_name="custom_domains")
    op.drop_table("custom_domains")
