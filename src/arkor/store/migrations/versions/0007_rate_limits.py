"""Rate limits: per-deployment and per-key limits, and the window counters and leases that
every server process shares.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LIMIT_COLUMNS = ("requests_per_minute", "tokens_per_minute", "concurrent_requests")


def upgrade() -> None:
    for table in ("deployments", "deployment_keys"):
        for column in LIMIT_COLUMNS:
            op.add_column(table, sa.Column(column, sa.Integer()))
    op.create_table(
        "rate_limit_windows",
        sa.Column("bucket", sa.String(120), primary_key=True),
        sa.Column("window_start", sa.BigInteger(), primary_key=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "rate_limit_leases",
        sa.Column("bucket", sa.String(120), primary_key=True),
        sa.Column("lease", sa.String(40), primary_key=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_leases")
    op.drop_table("rate_limit_windows")
    for table in ("deployment_keys", "deployments"):
        for column in LIMIT_COLUMNS:
            op.drop_column(table, column)
