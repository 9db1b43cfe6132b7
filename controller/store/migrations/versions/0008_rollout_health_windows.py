"""rollout batches, budgets, windows; site policies; device labels

Revision ID: 0008_rollout_health_windows
Revises: 0006_trust_chain
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_rollout_health_windows"
down_revision = "0006_trust_chain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("device_labels", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("batch", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("budgets", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("rollout_nodes") as batch:
        batch.add_column(sa.Column("batch", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("phase", sa.String(length=16), nullable=False, server_default="switched")
        )
        batch.add_column(sa.Column("switched_at", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("waiting", sa.String(length=256), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("rollout_nodes") as batch:
        for column in ("waiting", "switched_at", "phase", "batch"):
            batch.drop_column(column)
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("budgets")
        batch.drop_column("batch")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("device_labels")
    op.drop_table("site_policies")
