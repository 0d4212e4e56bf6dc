"""The contact change log says what each change changed (fields, stage, tags) and the stage
the contact left, so that a rule looks again only at the changes that could turn its verdict.

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

COLUMNS = ("fields", "stage", "tags", "from_stage")


def upgrade() -> None:
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("contact_change")}
    if "fields" not in present:  # a downgrade leaves them: see below
        # The changes logged before say that everything changed: every rule looks at them.
        for name in COLUMNS[:3]:
            op.add_column(
                "contact_change", sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.true())
            )
        op.add_column("contact_change", sa.Column("from_stage", sa.String(), nullable=True))
    changes.drop_triggers(op.get_bind())
    changes.create_triggers(op.get_bind())


def downgrade() -> None:
    """Nothing to undo: revision 0007's code never reads the new columns, and the triggers
    that fill them log every change it logged. Dropping the columns would copy the log's
    table on SQLite and lose its triggers."""
