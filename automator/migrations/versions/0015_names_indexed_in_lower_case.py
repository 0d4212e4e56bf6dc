"""Contacts' first and last names indexed in lower case, so that the console and `automator
contacts find` find a contact by the start of a name without reading every contact.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NAMES = {"ix_contact_first_name_key": "first_name", "ix_contact_last_name_key": "last_name"}


def _name_key(column: str) -> sa.TextClause:
    """`automator.name_keys.name_key` as it is at this revision: the index's expression."""
    collated = ' COLLATE "C"' if op.get_bind().dialect.name == "postgresql" else ""
    return sa.text(f"lower({column}){collated}")


def upgrade() -> None:
    for index, column in NAMES.items():
        op.create_index(index, "contact", [_name_key(column)])


def downgrade() -> None:
    for index in NAMES:
        op.drop_index(index, table_name="contact")
