"""On PostgreSQL, an INSERT into event, contact_date or stage_change waits behind the
sequence fence, so that a rule's mark of new rows never passes a row not yet committed (see
`automator.store.postgres`); nothing changes on SQLite.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from automator.store import postgres

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres.create_fences(op.get_bind())


def downgrade() -> None:
    postgres.drop_fences(op.get_bind())
