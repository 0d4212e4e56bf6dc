"""Yearly date triggers and local-time schedules: a date attribute is found by its month and
day (whatever its year), and contacts by their time zone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _month_day(value: sa.ColumnElement[sa.DateTime]) -> sa.ColumnElement[int]:
    """`automator.tables.month_day` as it was at this revision: the index's expression."""
    return sa.extract("month", value) * sa.literal_column("100") + sa.extract("day", value)


def upgrade() -> None:
    op.create_index("ix_contact_timezone", "contact", ["timezone"])
    op.create_index(
        "ix_contact_date_name_month_day",
        "contact_date",
        [sa.column("name"), _month_day(sa.column("value"))],
    )


def downgrade() -> None:
    op.drop_index("ix_contact_date_name_month_day", table_name="contact_date")
    op.drop_index("ix_contact_timezone", table_name="contact")
