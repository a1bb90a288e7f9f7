"""Real users (email, name, admin, disabled), token expiry and revocation, and invites.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from arkor.store.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

USER_COLUMNS = ("name", "admin", "disabled")
TOKEN_COLUMNS = ("name", "prefix", "expires_at", "last_used_at", "revoked_at")


def upgrade() -> None:
    op.add_column("users", sa.Column("name", sa.String(200)))
    op.add_column("users", sa.Column("admin", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column("users", sa.Column("disabled", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.create_index("ix_users_email", "users", ["email"], unique=True)
    op.add_column("access_tokens", sa.Column("name", sa.String(80)))
    op.add_column("access_tokens", sa.Column("prefix", sa.String(20)))
    op.add_column("access_tokens", sa.Column("expires_at", UTCDateTime()))
    op.add_column("access_tokens", sa.Column("last_used_at", UTCDateTime()))
    op.add_column("access_tokens", sa.Column("revoked_at", UTCDateTime()))
    op.create_table(
        "invites",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "org_id", sa.String(36), sa.ForeignKey("orgs.id", ondelete="CASCADE"),
            nullable=False, index=True,
        ),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime()),
        sa.Column("used_by", sa.String(36), sa.ForeignKey("users.id", ondelete="SET NULL")),
    )


def downgrade() -> None:
    op.drop_table("invites")
    for column in TOKEN_COLUMNS:
        op.drop_column("access_tokens", column)
    op.drop_index("ix_users_email", table_name="users")
    for column in USER_COLUMNS:
        op.drop_column("users", column)
