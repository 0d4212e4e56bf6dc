"""A claim's owner on each message, a session version per console user, failed logins.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import automator.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failure",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("at", automator.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_failure_address_at", "login_failure", ["address", "at"], unique=False)
    op.create_index("ix_login_failure_at", "login_failure", ["at"], unique=False)
    op.create_index("ix_login_failure_name_at", "login_failure", ["name", "at"], unique=False)
    with op.batch_alter_table("console_user") as batch_op:
        # Existing users start at 0; their sessions signed before the upgrade carry none.
        batch_op.add_column(sa.Column("session_version", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("message") as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message") as batch_op:
        batch_op.drop_column("claimed_by")
    with op.batch_alter_table("console_user") as batch_op:
        batch_op.drop_column("session_version")
    op.drop_index("ix_login_failure_name_at", table_name="login_failure")
    op.drop_index("ix_login_failure_at", table_name="login_failure")
    op.drop_index("ix_login_failure_address_at", table_name="login_failure")
    op.drop_table("login_failure")
