"""The schema as automator made it before migrations: every table, column and index.

A database made by that release (no alembic_version table) is stamped with this revision by
`automator db upgrade`, then brought to head.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import automator.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_entry",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_audit_entry_contact_id"), "audit_entry", ["contact_id"], unique=False)
    op.create_index(op.f("ix_audit_entry_message_id"), "audit_entry", ["message_id"], unique=False)
    op.create_table(
        "console_user",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", automator.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "contact",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("first_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("last_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("locale", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("stage_entered_at", automator.tables.UTCDateTime(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("updated_at", automator.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_index(op.f("ix_contact_stage"), "contact", ["stage"], unique=False)
    op.create_table(
        "coupon",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("pool", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("percent_off", sa.Integer(), nullable=True),
        sa.Column("expires_at", automator.tables.UTCDateTime(), nullable=True),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("rule_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("created_at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("assigned_at", automator.tables.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index(op.f("ix_coupon_message_id"), "coupon", ["message_id"], unique=False)
    op.create_index("ix_coupon_pool_free", "coupon", ["pool", "message_id"], unique=False)
    op.create_table(
        "heartbeat",
        sa.Column("daemon", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("started_at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("seen_at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("last_tick_at", automator.tables.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("daemon"),
    )
    op.create_table(
        "rule_state",
        sa.Column("rule_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("trigger_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("evaluated_until", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.Column("date_seq", sa.Integer(), nullable=False),
        sa.Column("last_tick_at", automator.tables.UTCDateTime(), nullable=True),
        sa.Column("last_summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id"),
    )
    op.create_table(
        "suppression",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", automator.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("email"),
    )
    op.create_table(
        "contact_date",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("value", automator.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contact_id", "name"),
    )
    op.create_index("ix_contact_date_name_value", "contact_date", ["name", "value"], unique=False)
    op.create_table(
        "contact_tag",
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("tag", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("added_at", automator.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
        ),
        sa.PrimaryKeyConstraint("contact_id", "tag"),
    )
    op.create_table(
        "event",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("received_at", automator.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_event_contact_type_at", "event", ["contact_id", "type", "at"], unique=False)
    op.create_index("ix_event_type_at_contact", "event", ["type", "at", "contact_id"], unique=False)
    op.create_table(
        "message",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("rule_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("occurrence", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("occurred_at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("due_at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("send_at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("expires_at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("locale", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("hold_kind", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("skip_policies", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_until", automator.tables.UTCDateTime(), nullable=True),
        sa.Column("created_at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("sent_at", automator.tables.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule_id", "contact_id", "occurrence", name="uq_message_dedupe"),
    )
    op.create_index("ix_message_contact_sent", "message", ["contact_id", "sent_at"], unique=False)
    op.create_index("ix_message_created_id", "message", ["created_at", "id"], unique=False)
    op.create_index("ix_message_rule_created_id", "message", ["rule_id", "created_at", "id"], unique=False)
    op.create_index("ix_message_rule_status", "message", ["rule_id", "status"], unique=False)
    op.create_index("ix_message_status_created_id", "message", ["status", "created_at", "id"], unique=False)
    op.create_index(
        "ix_message_status_priority_send_at", "message", ["status", "priority", "send_at", "id"], unique=False
    )
    op.create_table(
        "stage_change",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("from_stage", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("to_stage", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("cause", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_stage_change_contact_id"), "stage_change", ["contact_id"], unique=False)
    op.create_index("ix_stage_change_stage_at", "stage_change", ["to_stage", "at"], unique=False)
    op.create_table(
        "message_content",
        sa.Column(
            "message_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("text_body", automator.tables.PackedText(), nullable=False),
        sa.Column("html_body", automator.tables.PackedText(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["message.id"],
        ),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_table(
        "message_history",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("at", automator.tables.UTCDateTime(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["message.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_message_history_message_id"), "message_history", ["message_id"], unique=False)
    op.create_index("ix_message_history_status_at", "message_history", ["status", "at"], unique=False)


def downgrade() -> None:
    raise NotImplementedError("automator's schema is not taken back below its baseline")
