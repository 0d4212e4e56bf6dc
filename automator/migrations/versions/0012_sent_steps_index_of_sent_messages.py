"""The (rule, step, sent_at) index keeps sent messages only: claiming a message leaves it
alone, and recording a send adds one entry instead of moving one (see `tables.Message`).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from automator.tables import SENT_AT_SET

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

NAME = "ix_message_rule_step_sent"
COLUMNS = ["rule_id", "step", "sent_at"]


def upgrade() -> None:
    op.drop_index(NAME, table_name="message")
    op.create_index(NAME, "message", COLUMNS, sqlite_where=SENT_AT_SET, postgresql_where=SENT_AT_SET)


def downgrade() -> None:
    op.drop_index(NAME, table_name="message")
    op.create_index(NAME, "message", COLUMNS)
