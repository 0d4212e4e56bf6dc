"""Alembic's environment: runs the revisions on the connection automator hands it."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from automator import tables  # noqa: F401  (registers the tables)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite alters a table by copying it: Alembic's batch mode does that for it.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
