"""On PostgreSQL, the contact change log's trigger plans its statements at each call, not
once per connection (see `automator.store.changes`); nothing changes on SQLite.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from automator.store import changes

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        changes.drop_triggers(op.get_bind())
        changes.create_triggers(op.get_bind())


def downgrade() -> None:
    """Nothing to undo: revision 0010's code logs the same changes with either function."""
