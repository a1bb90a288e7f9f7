"""Usage metering: hourly buckets per deployment and key.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from arkor.store.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_buckets",
        sa.Column("deployment_id", sa.String(36),
                  sa.ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key_id", sa.String(36), primary_key=True),
        sa.Column("start", UTCDateTime(), primary_key=True),
        sa.Column("project_id", sa.String(36), nullable=False, index=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("errors_4xx", sa.Integer(), nullable=False),
        sa.Column("errors_5xx", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Integer(), nullable=False),
        sa.Column("latency_ms_sum", sa.Integer(), nullable=False),
        sa.Column("latency_histogram", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage_buckets")
