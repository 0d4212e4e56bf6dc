"""PostgreSQL's bulk load: an import's batch is copied (COPY, through psycopg's copy support)
into a temporary staging table, and stored from there by one INSERT … SELECT … ON CONFLICT,
instead of being bound and inserted row by row.

A staging table lives for its transaction only (ON COMMIT DROP), so concurrent imports never
see each other's. The imports' other rules hold as on SQLite: the first line of an event key
is the one stored; a contact's record sets the fields it has and adds its attributes to the
stored ones; a changed date attribute gets a new row (a new id, which the next tick reads as
a change), one that stopped being a date leaves the date index.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from automator.journey import Journey
from automator.staged import CONTACT_FIELDS, ContactCopy, EventCopy, dates_json, json_bytes, naive_utc
from automator.store.bulk import driver_cursor

# Every statement reaches the store's rows through the batch's own keys (`= ANY(%(emails)b)`,
# the arrays sent in binary, which psycopg writes several times faster than as text), so
# that the planner can look up as many rows as the batch has rather than scan a table.
# It does so when an index lookup is priced as what it costs on an SSD with the store in
# the cache (random_page_cost 1.1, not the default 4, which prices it for a spinning disk):
# otherwise a batch of 10,000 scans a million contacts, and an import's time grows with
# the square of its size. The batch's sorts and hashes stay in memory.
BATCH_SETTINGS = "SET LOCAL work_mem = '64MB'; SET LOCAL random_page_cost = 1.1"

# A batch's events, by address; and the contact of each address, by the batch's own
# statements (`CONTACTS_FOR_EVENTS`), which the events' INSERT joins.
EVENT_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS import_event (
    seq integer NOT NULL, key text NOT NULL, email text NOT NULL, type text NOT NULL,
    at timestamptz NOT NULL, properties json NOT NULL
) ON COMMIT DROP;
CREATE TEMPORARY TABLE IF NOT EXISTS import_event_contact (
    email text PRIMARY KEY, contact_id bigint NOT NULL
) ON COMMIT DROP;
TRUNCATE import_event, import_event_contact
"""

# In COPY's text format, as `EventCopy` writes it: the rows are written where the file is
# read, before the batch reaches the connection that stores it. An event's time is copied
# as it is (aware, ISO 8601), and kept in UTC without the zone, as `event.at` keeps times,
# by the INSERT. The rows are UTF-8 whatever the connection's encoding (PGCLIENTENCODING).
COPY_EVENTS = "COPY import_event (seq, key, email, type, at, properties) FROM STDIN (ENCODING 'UTF8')"

# The contacts of the batch's addresses that exist.
CONTACTS_BY_EMAIL = "SELECT id, email FROM contact WHERE email = ANY(%(emails)b)"

# The contact of each of the batch's addresses, kept in `import_event_contact`: the ones
# that exist, and, made for the others, contacts in the first stage, with that move
# recorded. Returns how many addresses it found a contact for, and the addresses it made
# one for.
CONTACTS_FOR_EVENTS = f"""
WITH existing AS MATERIALIZED ({CONTACTS_BY_EMAIL}
), created AS (
    INSERT INTO contact (email, stage, stage_entered_at, attributes, created_at, updated_at)
    SELECT s.email, %(stage)s::text, %(entered)s::timestamp, '{{}}'::json, %(now)s, %(now)s
    FROM unnest(%(emails)b::text[]) AS s(email)
    WHERE s.email NOT IN (SELECT email FROM existing)
    ORDER BY s.email
    ON CONFLICT (email) DO NOTHING
    RETURNING id, email, stage
), staged AS (
    INSERT INTO stage_change (contact_id, from_stage, to_stage, at, cause)
    SELECT id, NULL, stage, %(now)s, 'created by an event' FROM created WHERE stage IS NOT NULL
), known AS (
    INSERT INTO import_event_contact (email, contact_id)
    SELECT email, id FROM existing UNION ALL SELECT email, id FROM created
    RETURNING email
)
SELECT (SELECT count(*) FROM known), ARRAY(SELECT email FROM created ORDER BY email)
"""

# Contacts made by a transaction that committed while CONTACTS_FOR_EVENTS ran (its INSERT
# waited for it, and skipped them).
CONTACTS_COMMITTED_MEANWHILE = f"""
INSERT INTO import_event_contact (email, contact_id)
SELECT email, id FROM ({CONTACTS_BY_EMAIL}) AS found
ON CONFLICT (email) DO NOTHING
"""


# The batch's events in the file's order (each key's first line only: `EventCopy` copies
# no other; an address without a contact is one erased since CONTACTS_FOR_EVENTS looked,
# and its events are skipped); a key stored before is skipped. The stored events of the
# types that move contacts along the journey then move them, as `events._apply_moves`
# does: in the events' order (time, then key), each to its event's stage when that is
# further than the stage the contact has reached, every move a row of `stage_change`, each
# moved contact's row written once. Done here, a batch sends nothing back but its count: neither its keys nor
# its contacts' stages go to the client and back.
INSERT_EVENTS = """
WITH stored AS (
    INSERT INTO event (key, contact_id, type, at, properties, received_at)
    SELECT e.key, c.contact_id, e.type, e.at AT TIME ZONE 'UTC', e.properties, %(now)s
    FROM import_event AS e JOIN import_event_contact AS c ON c.email = e.email
    ORDER BY e.seq
    ON CONFLICT (key) DO NOTHING
    RETURNING key, contact_id, type, at
), moving AS (
    SELECT s.contact_id, s.key, s.at, s.type, m.stage AS target, m.rank
    FROM stored AS s
    JOIN unnest(%(move_types)b::text[], %(move_stages)b::text[], %(move_ranks)b::int4[])
        AS m(type, stage, rank) ON m.type = s.type
), rising AS (
    -- An event can move its contact only past the stages of the contact's events before it.
    SELECT * FROM (
        SELECT moving.*, max(rank) OVER (
            PARTITION BY contact_id ORDER BY at, key ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS passed
        FROM moving
    ) AS ranked
    WHERE passed IS NULL OR rank > passed
), changes AS (
    -- ...and past the contact's stage: its row read for those events only.
    SELECT r.contact_id, r.key, r.at, r.type, r.target, c.stage AS current
    FROM rising AS r
    JOIN contact AS c ON c.id = r.contact_id
    LEFT JOIN unnest(%(stages)b::text[], %(ranks)b::int4[]) AS j(stage, rank) ON j.stage = c.stage
    WHERE r.rank > COALESCE(j.rank, -1)
), recorded AS (
    INSERT INTO stage_change (contact_id, from_stage, to_stage, at, cause)
    SELECT contact_id,
        COALESCE(lag(target) OVER (PARTITION BY contact_id ORDER BY at, key), current),
        target, at, 'event ' || type || ' (' || key || ')'
    FROM changes
    ORDER BY at, key
), moved AS (
    UPDATE contact AS c SET stage = f.target, stage_entered_at = f.at
    FROM (
        SELECT DISTINCT ON (contact_id) contact_id, target, at FROM changes
        ORDER BY contact_id, at DESC, key DESC
    ) AS f
    WHERE c.id = f.contact_id
)
SELECT count(*) FROM stored
"""

CONTACT_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS import_contact (
    seq integer NOT NULL, email text NOT NULL, first_name text, last_name text, locale text,
    timezone text, stage text, attributes json NOT NULL, dates jsonb NOT NULL
) ON COMMIT DROP
"""

# In COPY's text format, as `ContactCopy` writes it, where the file is read.
CONTACT_COLUMNS = f"seq, email, {', '.join(CONTACT_FIELDS)}, attributes, dates"
COPY_CONTACTS = f"COPY import_contact ({CONTACT_COLUMNS}) FROM STDIN (ENCODING 'UTF8')"

# Dates given without a time, placed in their stored contacts' zones (`contacts.bulk_upsert`),
# over those the batch's rows hold (at midnight in the project's zone).
REDATE_CONTACTS = """
UPDATE import_contact AS s SET dates = s.dates || f.dates::jsonb
FROM unnest(%(seqs)b::int4[], %(dates)b::text[]) AS f(seq, dates)
WHERE s.seq = f.seq
"""

# A stored contact's attributes with a record's over them. Through `jsonb`, whose `||` makes
# a batch's upsert about a quarter cheaper, when neither holds a number that `jsonb` would
# rewrite: one in exponent form (1e16 would be read back as an integer, 1.5e300 as 301
# digits) or -0.0; else as `json`, whose values keep the text they were written with, as
# SQLite keeps them.
# (The pattern may also match inside a string, which only takes the slower way.)
MERGED_ATTRIBUTES = """CASE
    WHEN c.attributes::text || s.attributes::text ~ '[0-9][eE]|-0\\.0*[^0-9]' THEN (
        SELECT COALESCE(json_object_agg(key, value), '{}'::json) FROM (
            SELECT key, value FROM json_each(c.attributes) WHERE (s.attributes -> key) IS NULL
            UNION ALL
            SELECT key, value FROM json_each(s.attributes)
        ) AS merged
    )
    ELSE (c.attributes::jsonb || s.attributes::jsonb)::json
END"""

# The contacts that exist are updated (their old stage read beside them), the others
# inserted, and each change of stage recorded; returns every contact's id, and whether it
# is new, by address.
UPSERT_CONTACTS = f"""
WITH old AS (
    SELECT id, email, stage FROM contact WHERE email = ANY(%(emails)b)
), updated AS (
    UPDATE contact AS c SET
        first_name = COALESCE(s.first_name, c.first_name),
        last_name = COALESCE(s.last_name, c.last_name),
        locale = COALESCE(s.locale, c.locale),
        timezone = COALESCE(s.timezone, c.timezone),
        stage = COALESCE(s.stage, c.stage),
        stage_entered_at = CASE
            WHEN s.stage IS NOT NULL AND s.stage IS DISTINCT FROM old.stage THEN %(now)s
            ELSE c.stage_entered_at
        END,
        attributes = {MERGED_ATTRIBUTES},
        updated_at = %(now)s
    FROM import_contact AS s JOIN old ON old.email = s.email
    WHERE c.email = ANY(%(emails)b) AND c.id = old.id
    RETURNING c.id, c.email, old.stage AS from_stage, s.stage AS to_stage
), created AS (
    INSERT INTO contact (
        email, first_name, last_name, locale, timezone, stage, stage_entered_at, attributes,
        created_at, updated_at
    )
    SELECT s.email, s.first_name, s.last_name, s.locale, s.timezone,
        COALESCE(s.stage, %(stage)s::text),
        CASE WHEN COALESCE(s.stage, %(stage)s::text) IS NOT NULL THEN %(now)s END,
        s.attributes, %(now)s, %(now)s
    FROM import_contact AS s
    WHERE s.email NOT IN (SELECT email FROM old)
    ORDER BY s.seq
    ON CONFLICT (email) DO NOTHING
    RETURNING id, email, stage
), staged AS (
    INSERT INTO stage_change (contact_id, from_stage, to_stage, at, cause)
    SELECT id, from_stage, to_stage, %(now)s, 'import' FROM updated
    WHERE to_stage IS NOT NULL AND to_stage IS DISTINCT FROM from_stage
    UNION ALL
    SELECT id, NULL, stage, %(now)s, 'import' FROM created WHERE stage IS NOT NULL
)
SELECT id, email, false FROM updated UNION ALL SELECT id, email, true FROM created
"""

# A date attribute that changed, or stopped being a date, leaves the index...
DROP_CHANGED_DATES = """
DELETE FROM contact_date AS d
USING import_contact AS s JOIN unnest(%(ids)b::bigint[], %(emails)b::text[]) AS c(id, email)
    ON c.email = s.email
WHERE d.contact_id = ANY(%(ids)b) AND d.contact_id = c.id AND (s.attributes -> d.name) IS NOT NULL
    AND ((s.dates ->> d.name) IS NULL OR (s.dates ->> d.name)::timestamp <> d.value)
"""

# ...and every date attribute not indexed (now) is added with a new id.
ADD_DATES = """
INSERT INTO contact_date (contact_id, name, value)
SELECT c.id, d.key, d.value::timestamp
FROM import_contact AS s JOIN unnest(%(ids)b::bigint[], %(emails)b::text[]) AS c(id, email)
    ON c.email = s.email,
    jsonb_each_text(s.dates) AS d
ORDER BY s.seq
ON CONFLICT (contact_id, name) DO NOTHING
"""

# Stage changes in the order given (their ids in it), in one statement rather than one
# INSERT per change.
RECORD_MOVES = """
INSERT INTO stage_change (contact_id, from_stage, to_stage, at, cause)
SELECT m.contact_id, m.from_stage, m.to_stage, m.at, m.cause
FROM unnest(%(ids)b::bigint[], %(from)b::text[], %(to)b::text[], %(at)b::timestamp[], %(causes)b::text[])
    WITH ORDINALITY AS m(contact_id, from_stage, to_stage, at, cause, n)
ORDER BY m.n
"""

MOVE_CONTACTS = """
UPDATE contact AS c SET stage = m.stage, stage_entered_at = m.since
FROM unnest(%(ids)b::bigint[], %(stages)b::text[], %(since)b::timestamp[]) AS m(id, stage, since)
WHERE c.id = ANY(%(ids)b) AND c.id = m.id
"""


def copy_events(session: Session, batch: EventCopy, now: datetime, journey: Journey) -> tuple[int, list[str]]:
    """Store the events whose key is new, creating contacts for unknown addresses, and apply
    the journey moves of the stored ones; returns how many were stored, and the addresses
    of the contacts made."""
    cursor = _cursor(session)
    cursor.execute(BATCH_SETTINGS)
    cursor.execute(EVENT_STAGING)
    created = _contacts_for(cursor, batch.emails, now, journey.first_stage)
    with cursor.copy(COPY_EVENTS) as copy:
        copy.write(batch.rows)
    (stored,) = cursor.execute(INSERT_EVENTS, {"now": naive_utc(now), **_journey(journey)}).fetchone()
    return stored, created


def _journey(journey: Journey) -> dict[str, list[Any]]:
    """The journey's stages and moves as the arrays INSERT_EVENTS joins: each stage's rank,
    and each moving event type's stage and its rank."""
    moves = sorted(journey.moves.items())
    return {
        "stages": list(journey.stages),
        "ranks": list(range(len(journey.stages))),
        "move_types": [event_type for event_type, _ in moves],
        "move_stages": [stage for _, stage in moves],
        "move_ranks": [journey.rank(stage) for _, stage in moves],
    }


def _contacts_for(cursor: Any, emails: list[str], now: datetime, first_stage: str | None) -> list[str]:
    """Keep the contact id of each address in `import_event_contact`, making the missing
    contacts; returns the addresses made."""
    entered = naive_utc(now) if first_stage else None
    values = {"emails": emails, "stage": first_stage, "entered": entered, "now": naive_utc(now)}
    known, created = cursor.execute(CONTACTS_FOR_EVENTS, values).fetchone()
    if known < len(emails):
        cursor.execute(CONTACTS_COMMITTED_MEANWHILE, {"emails": emails})
    return list(created)


def copy_contacts(
    session: Session,
    batch: ContactCopy,
    now: datetime,
    first_stage: str | None,
    redated: Sequence[tuple[int, dict[str, datetime]]] = (),
) -> tuple[list[str], list[int]]:
    """Upsert contacts by email (one record per email), with the dates `redated` gives
    (by the record's place in the batch) over those of its row; returns the addresses of
    the new contacts, and the ids of all."""
    cursor = _cursor(session)
    cursor.execute(BATCH_SETTINGS)
    cursor.execute(CONTACT_STAGING)
    cursor.execute("TRUNCATE import_contact")
    with cursor.copy(COPY_CONTACTS) as copy:
        copy.write(batch.rows)
    if redated:
        dates = [dates_json(placed) for _, placed in redated]
        cursor.execute(REDATE_CONTACTS, {"seqs": [seq for seq, _ in redated], "dates": dates})
    values = {"emails": batch.emails, "now": naive_utc(now), "stage": first_stage}
    stored = cursor.execute(UPSERT_CONTACTS, values).fetchall()
    updated = [(id_, email) for id_, email, new in stored if not new]
    if updated:  # only a contact that was stored before can have dates indexed
        cursor.execute(DROP_CHANGED_DATES, _ids(updated))
    cursor.execute(ADD_DATES, _ids([(id_, email) for id_, email, _ in stored]))
    return [email for _, email, new in stored if new], [id_ for id_, _, _ in stored]


def _ids(contacts: list[tuple[int, str]]) -> dict[str, list[Any]]:
    """(id, email) pairs as the `ids` and `emails` arrays the date statements join on."""
    return {"ids": [id_ for id_, _ in contacts], "emails": [email for _, email in contacts]}


def move_contacts(
    session: Session, changes: Sequence[dict[str, Any]], moves: dict[int, tuple[str, datetime]]
) -> None:
    """Record the stage changes (rows of `stage_change`, in order) and put contacts in their
    new stages (contact id → stage and since when) in one UPDATE: one statement each, not one
    per change or contact, whatever fires on a change of a contact."""
    cursor = _cursor(session)
    recorded = {
        "ids": [change["contact_id"] for change in changes],
        "from": [change["from_stage"] for change in changes],
        "to": [change["to_stage"] for change in changes],
        "at": [naive_utc(change["at"]) for change in changes],
        "causes": [change["cause"] for change in changes],
    }
    cursor.execute(RECORD_MOVES, recorded)
    moved = ((contact_id, stage, naive_utc(at)) for contact_id, (stage, at) in moves.items())
    ids, stages, since = zip(*moved, strict=True)
    cursor.execute(MOVE_CONTACTS, {"ids": list(ids), "stages": list(stages), "since": list(since)})


def _cursor(session: Session) -> Any:
    """A psycopg cursor on the session's connection, inside its transaction, that writes
    JSON through orjson: a batch's properties and attributes are most of what it sends."""
    from psycopg.types.json import set_json_dumps  # PostgreSQL's driver: an optional install

    cursor = driver_cursor(session)
    set_json_dumps(json_bytes, context=cursor)
    return cursor
