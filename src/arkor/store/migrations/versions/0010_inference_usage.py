"""Usage metering of the control plane's inference route: hourly buckets per project.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from arkor.store.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inference_usage_buckets",
        sa.Column("project_id", sa.String(36),
                  sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("start", UTCDateTime(), primary_key=True),
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
    op.drop_table("inference_usage_buckets")
