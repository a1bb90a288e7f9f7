"""Stored runs: each call a deployment served, kept by its run retention.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from arkor.store.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("deployment_id", sa.String(36),
                  sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("route", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("response_id", sa.String(80), index=True),
        sa.Column("key_id", sa.String(36), index=True),
        sa.Column("key_prefix", sa.String(17)),
        sa.Column("base_model", sa.String(200), nullable=False),
        sa.Column("adapter", sa.String(300)),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("response_json", sa.Text()),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("ttft_ms", sa.Integer()),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("mark", sa.String(10)),
        sa.Column("stored", sa.Boolean(), nullable=False),
        sa.Column("metadata_json", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_runs_deployment_created", "runs", ["deployment_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_deployment_created", table_name="runs")
    op.drop_table("runs")
