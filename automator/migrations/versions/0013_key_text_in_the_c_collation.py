"""On PostgreSQL, the text the store compares rather than shows (addresses, keys, rule ids,
statuses, stages) is in the "C" collation (see `automator.tables.key_text`); nothing changes
on SQLite. Each table's indexes on these columns are built again, once.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# table → its columns of key text, with their lengths
COLUMNS: dict[str, dict[str, int | None]] = {
    "contact": {"email": 320, "timezone": None, "stage": None},
    "contact_date": {"name": None},
    "contact_tag": {"tag": None},
    "stage_change": {"to_stage": None},
    "event": {"key": 200, "type": None},
    "suppression": {"email": 320},
    "message": {"rule_id": None, "occurrence": None, "status": None},
    "message_history": {"status": None},
}


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')


def _collate(collation: str) -> None:
    """One ALTER TABLE per table, so that each table's indexes are built again once; then the
    table's statistics, which a change of a column's type drops (the planner would go blind
    on the columns every lookup filters by until the next automatic analyze)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        changes = ", ".join(
            f"ALTER COLUMN {name} TYPE VARCHAR{f'({length})' if length else ''} COLLATE {collation}"
            for name, length in columns.items()
        )
        op.execute(f"ALTER TABLE {table} {changes}")
        op.execute(f"ANALYZE {table}")
