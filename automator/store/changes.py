"""The contact change log: every write that changes a contact's fields, attributes, stage or
tags appends the contact's id to `contact_change`, so that a tick can look again at the due
occurrences of the contacts changed since a rule's last tick (see `store.windows`).

The log is written by the database's own triggers, not by automator's code: contacts are
written by many paths (the ORM, the HTTP API, an import's bulk paths and PostgreSQL's
COPY with its upsert, stage moves by events, a rule's `then`), and a trigger sees them all.
A new contact needs no entry: its occurrences are rows written after it, new to every rule.

Each entry says what changed (`fields`, `stage`, `tags`) and the stage the contact left, so
that a rule looks again only at the changes that could turn its verdict
(`windows.changed_since`): a move between two of its stages, or a tag it does not test, cannot. After
a dispatch whose `then` moves and tags thousands of contacts, most rules skip them all.

A rule's watermark keeps the first position of the log it has not looked at. On SQLite a
row's position is its place in the log (one writer at a time: every uncommitted row comes
after what a reader sees). On PostgreSQL it is the id of the transaction that wrote it, and
a tick's mark is the oldest transaction still running when it looked: a long import that
commits after a tick has looked (its rows numbered before the tick's) is still found.

The triggers are not in the models: `schema` makes them for a new database, the revision
that added the log for an upgraded one. A later revision that rebuilds `contact` or
`contact_tag` (Alembic's batch mode copies a SQLite table) must make them again;
tests/test_migrations.py checks that an upgraded database logs changes.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, delete, func, select
from sqlmodel import Session

from automator.store import table
from automator.tables import ContactChange, RuleState

CHANGES = table(ContactChange)
RULE_STATES = table(RuleState)

# What a rule's conditions and stages can name of a contact (`model.CONTACT_COLUMNS` and
# the attributes): a write that changes none of them changes no rule's verdict.
FIELDS = ("email", "first_name", "last_name", "locale", "timezone", "attributes")
WATCHED = (*FIELDS, "stage")

_SQLITE_APPEND = (
    "INSERT INTO contact_change (position, contact_id, fields, stage, tags, from_stage) "
    "SELECT coalesce(max(position), 0) + 1, {contact}, {fields}, {stage}, {tags}, {from_stage} "
    "FROM contact_change"
)
_UPDATED = {
    "fields": f"({' OR '.join(f'OLD.{name} IS NOT NEW.{name}' for name in FIELDS)})",
    "stage": "(OLD.stage IS NOT NEW.stage)",
    "tags": 0,
    "from_stage": "OLD.stage",
}
_TAGGED = {"fields": 0, "stage": 0, "tags": 1, "from_stage": "NULL"}
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER contact_change_on_update AFTER UPDATE OF {", ".join(WATCHED)} ON contact
    WHEN {" OR ".join(f"OLD.{name} IS NOT NEW.{name}" for name in WATCHED)}
    BEGIN {_SQLITE_APPEND.format(contact="NEW.id", **_UPDATED)}; END""",
    f"""CREATE TRIGGER contact_change_on_tag_added AFTER INSERT ON contact_tag
    BEGIN {_SQLITE_APPEND.format(contact="NEW.contact_id", **_TAGGED)}; END""",
    f"""CREATE TRIGGER contact_change_on_tag_removed AFTER DELETE ON contact_tag
    BEGIN {_SQLITE_APPEND.format(contact="OLD.contact_id", **_TAGGED)}; END""",
]

# Statement triggers with transition tables: one INSERT … SELECT per statement, so that an
# import's upsert of thousands of contacts logs them in one go; a contact changed again in
# the same transaction is logged once, with all that changed and the stage it had before
# the first of them. `json` has no equality: attributes are compared as jsonb, by what they
# hold rather than how their text is spaced or ordered.
_FIELDS_BEFORE = ", ".join(
    f"old_rows.{name}::jsonb" if name == "attributes" else f"old_rows.{name}" for name in FIELDS
)
_FIELDS_AFTER = _FIELDS_BEFORE.replace("old_rows.", "new_rows.")
_POSITION = "pg_current_xact_id()::text::bigint"
_MERGED = """ON CONFLICT (position, contact_id) DO UPDATE SET
            fields = contact_change.fields OR excluded.fields,
            stage = contact_change.stage OR excluded.stage,
            tags = contact_change.tags OR excluded.tags,
            from_stage = CASE WHEN contact_change.stage THEN contact_change.from_stage
                ELSE excluded.from_stage END"""
_APPEND = "INSERT INTO contact_change (contact_id, position, fields, stage, tags, from_stage)"
# PL/pgSQL plans a function's statements once per connection and keeps the plan, made for
# the transition tables of the first call: after a first UPDATE of no rows (an upsert into
# an empty store), every big one later joined its old and new rows by a nested loop, 26 s
# for 20,000 contacts. Run through EXECUTE, each statement is planned for the rows at hand.
POSTGRESQL_TRIGGERS = [
    f"""CREATE FUNCTION contact_change_log() RETURNS trigger LANGUAGE plpgsql AS $function$
BEGIN
    IF TG_TABLE_NAME = 'contact' THEN
        EXECUTE $statement$
        {_APPEND}
        SELECT * FROM (
            SELECT new_rows.id, {_POSITION},
                ({_FIELDS_BEFORE}) IS DISTINCT FROM ({_FIELDS_AFTER}) AS fields,
                old_rows.stage IS DISTINCT FROM new_rows.stage AS stage,
                false AS tags, old_rows.stage AS from_stage
            FROM new_rows JOIN old_rows ON old_rows.id = new_rows.id
        ) AS changed WHERE fields OR stage
        {_MERGED}
        $statement$;
    ELSIF TG_OP = 'INSERT' THEN
        EXECUTE $statement$
        {_APPEND}
        SELECT DISTINCT contact_id, {_POSITION}, false, false, true, NULL::varchar FROM new_rows
        {_MERGED}
        $statement$;
    ELSE
        EXECUTE $statement$
        {_APPEND}
        SELECT DISTINCT contact_id, {_POSITION}, false, false, true, NULL::varchar FROM old_rows
        {_MERGED}
        $statement$;
    END IF;
    RETURN NULL;
END
$function$""",
    """CREATE TRIGGER contact_change_on_update AFTER UPDATE ON contact
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION contact_change_log()""",
    """CREATE TRIGGER contact_change_on_tag_added AFTER INSERT ON contact_tag
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION contact_change_log()""",
    """CREATE TRIGGER contact_change_on_tag_removed AFTER DELETE ON contact_tag
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION contact_change_log()""",
]

# Each trigger and its table.
TRIGGERS = [
    ("contact_change_on_update", "contact"),
    ("contact_change_on_tag_added", "contact_tag"),
    ("contact_change_on_tag_removed", "contact_tag"),
]


def create_triggers(connection: Connection) -> None:
    """The log's triggers, for a new database's schema and the revisions that add the log and
    what each entry says changed."""
    dialect = connection.dialect.name
    for statement in POSTGRESQL_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
        connection.exec_driver_sql(statement)


def drop_triggers(connection: Connection) -> None:
    postgresql = connection.dialect.name == "postgresql"
    for name, on in TRIGGERS:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {on}" if postgresql else ""))
    if postgresql:
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS contact_change_log()")


def position(session: Session) -> int:
    """The first position a change not yet seen can have: a mark to keep, read before the
    lookup that it covers (a change committed meanwhile is then looked at again, never lost)."""
    if session.get_bind().dialect.name == "postgresql":
        oldest_running = select(func.pg_snapshot_xmin(func.pg_current_snapshot()))
        return int(session.execute(oldest_running).scalar_one())
    return int(session.execute(select(func.coalesce(func.max(CHANGES.c.position), 0) + 1)).scalar_one())


def prune(session: Session, rule_ids: Collection[str]) -> int:
    """Forget the changes that every one of these rules has looked at (those before the
    oldest of their marks); how many. A rule with no mark yet looks at none (its first tick
    covers the whole lateness window). On SQLite the newest position stays, so that the next
    one follows it. On PostgreSQL a position is the id of the transaction that wrote it, and
    the next transaction's is higher whatever stays: every change before the oldest mark
    goes, the newest transaction's too (a first load is one transaction, whose moves logged
    a change for each contact they moved). The rows of a journey's later steps
    (`<rule>#<step>`, see `rulestate.state_key`) never read the log: they are not among
    `rule_ids`, and left out."""
    rule_ids = [rule_id for rule_id in rule_ids if "#" not in rule_id]
    oldest_mark = session.execute(
        select(func.min(RULE_STATES.c.change_position)).where(RULE_STATES.c.rule_id.in_(rule_ids))
    ).scalar()
    first, newest = session.execute(select(func.min(CHANGES.c.position), func.max(CHANGES.c.position))).one()
    if first is None:
        return 0
    if oldest_mark is None:
        until = newest
    elif session.get_bind().dialect.name == "postgresql":
        until = oldest_mark
    else:
        until = min(oldest_mark, newest)
    if first >= until:
        return 0  # nothing to forget: no write
    return int(session.execute(delete(CHANGES).where(CHANGES.c.position < until)).rowcount)  # type: ignore[attr-defined]
