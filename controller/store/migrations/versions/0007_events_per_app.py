"""events per app instance, node presence

Revision ID: 0007_events_per_app
Revises: 0009_remote_access
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_events_per_app"
down_revision = "0009_remote_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("app_uuid", sa.String(length=36), nullable=True))
        batch.create_index("ix_events_app_uuid", ["app_uuid"])
        batch.create_index("ix_events_kind", ["kind"])
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(
            sa.Column("presence", sa.String(length=8), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("presence")
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_kind")
        batch.drop_index("ix_events_app_uuid")
        batch.drop_column("app_uuid")
