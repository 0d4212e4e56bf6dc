"""A log of changed contacts, kept by triggers, and each rule's position in it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from automator.store import changes

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_change",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("contact_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("position", "contact_id"),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("rule_state") as batch_op:
        # A rule's first tick after the upgrade looks at the changes logged since (none before).
        batch_op.add_column(sa.Column("change_position", sa.BigInteger(), nullable=False, server_default="0"))
    changes.create_triggers(op.get_bind())


def downgrade() -> None:
    changes.drop_triggers(op.get_bind())
    with op.batch_alter_table("rule_state") as batch_op:
        batch_op.drop_column("change_position")
    op.drop_table("contact_change")
