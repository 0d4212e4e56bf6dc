"""Journeys and A/B tests: each message knows its step of the rule's journey and its variant,
and a rule's sent steps are found by send time, for the step after them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: both databases add the column without rewriting the table.
    op.add_column("message", sa.Column("step", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("message", sa.Column("variant", sa.String(length=40), nullable=True))
    op.create_index("ix_message_rule_step_sent", "message", ["rule_id", "step", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_message_rule_step_sent", table_name="message")
    with op.batch_alter_table("message") as batch:
        batch.drop_column("variant")
        batch.drop_column("step")
