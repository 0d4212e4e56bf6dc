"""PostgreSQL compresses message bodies with LZ4 instead of pglz (see
`automator.store.postgres.compress_bodies_with_lz4`); nothing changes on SQLite.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from automator.store import postgres

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres.compress_bodies_with_lz4(op.get_bind())


def downgrade() -> None:
    """Nothing to undo: revision 0008's code reads bodies compressed either way."""
