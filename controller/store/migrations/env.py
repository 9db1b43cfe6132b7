"""Alembic environment: migrations run in process on the connection Database gives.

On PostgreSQL an advisory lock serialises concurrent upgrades (several controller
processes starting at once on one database).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from controller.store.database import load_all_models
from controller.store.models import Base

load_all_models()  # every module's tables are part of the schema

target_metadata = Base.metadata
_LOCK_ID = 0x0757_0057  # "outpost" schema lock

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through controller.store.models.Database.create_schema()")

is_pg = connection.dialect.name == "postgresql"
if is_pg:
    connection.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_ID})"))
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
