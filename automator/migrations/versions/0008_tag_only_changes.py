"""Mark the contact changes that are changes of tags alone, so that a rule that does not
test `contact.tags` skips them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from automator.store import changes

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("contact_change")}
    if "tags_only" not in columns:  # a downgrade leaves it: see below
        # The changes logged before count as more than tags: every rule looks at them.
        op.add_column(
            "contact_change", sa.Column("tags_only", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    changes.drop_triggers(op.get_bind())
    changes.create_triggers(op.get_bind())


def downgrade() -> None:
    """Nothing to undo: revision 0007's code never reads `tags_only`, and the triggers that
    fill it log every change it logged. Dropping the column would copy the log's table on
    SQLite and lose its triggers."""
