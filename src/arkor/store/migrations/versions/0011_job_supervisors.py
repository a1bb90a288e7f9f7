"""Job supervisors: which server process runs a job, and whether it is still alive.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from arkor.store.tables import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "supervisors",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
    )
    op.add_column("jobs", sa.Column("supervisor_id", sa.String(32)))


def downgrade() -> None:
    op.drop_column("jobs", "supervisor_id")
    op.drop_table("supervisors")
