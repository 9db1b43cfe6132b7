"""user invites

Revision ID: 0010_user_invites
Revises: 0008_rollout_health_windows
Create Date: 2026-12-04 20:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_user_invites"
down_revision = "0008_rollout_health_windows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_invites",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["ui_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_sha256"),
        sa.UniqueConstraint("user_id"),
    )
    with op.batch_alter_table("ui_invites", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ui_invites_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ui_invites", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ui_invites_expires_at"))
    op.drop_table("ui_invites")
