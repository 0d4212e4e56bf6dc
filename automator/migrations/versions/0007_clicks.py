"""Click tracking (`track_clicks`): one row per click on a tracked link, with its message.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import automator.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "click",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("at", automator.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_click_message_id"), "click", ["message_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_click_message_id"), table_name="click")
    op.drop_table("click")
