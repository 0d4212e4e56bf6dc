"""PostgreSQL keeps message bodies in their row, compressed (see
`automator.store.postgres.keep_bodies_in_line`); nothing changes on SQLite.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from automator.store import postgres

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres.keep_bodies_in_line(op.get_bind())


def downgrade() -> None:
    """Nothing to undo: revision 0013's code reads bodies stored either way."""
