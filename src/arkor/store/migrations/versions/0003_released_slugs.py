"""Released slugs: a deleted deployment's slug, reserved to its project for a grace period.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from arkor.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "released_slugs",
        sa.Column("slug", sa.String(64), primary_key=True),
        sa.Column(
            "project_id", sa.String(36), sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("released_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("released_slugs")
