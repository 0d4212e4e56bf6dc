"""Per-rule watermarks and the last tick's summary: a rule's row is keyed by its id, the
lookups of its journey's later steps by `<rule>#<step>` (`state_key`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from automator.store import postgres, table
from automator.store.candidates import Watermark
from automator.tables import Contact, ContactDate, Event, RuleState, StageChange

# The rows whose ids mark what a rule of each kind has seen: a schedule's, the contacts (a
# contact made after a firing was seen gets it, within its lateness, as a changed one does).
SEQUENCES = {
    "event": table(Event),
    "date": table(ContactDate),
    "stage": table(StageChange),
    "schedule": table(Contact),
}


def state_key(rule_id: str, step: int) -> str:
    """The row of a rule's lookup of `step`: the rule's own id for step 1."""
    return rule_id if step == 1 else f"{rule_id}#{step}"


def watermark(session: Session, rule_id: str, trigger_hash: str, fresh: datetime) -> Watermark:
    """The rule's mark, or `fresh` for a new rule or one whose trigger changed."""
    state = session.get(RuleState, rule_id)
    if state is None or state.trigger_hash != trigger_hash:
        return Watermark(until=fresh, seq=0)
    return Watermark(until=state.evaluated_until, seq=state.event_seq, changes=state.change_position)


def newest_ids(session: Session) -> dict[str, int] | None:
    """Per kind of rule, the newest id of the rows that trigger it, below which no row can
    still be committed; None when that cannot be known now (on PostgreSQL, a transaction
    inserting such rows is open: see `postgres.past_the_fence`), and the rules keep their
    marks. Read once per tick, before the lookups (a row committed meanwhile is found by
    its lookup, and again by the next tick's, whose dedupe test leaves it out)."""
    if session.get_bind().dialect.name == "postgresql" and not postgres.past_the_fence(session):
        return None
    return {
        kind: session.execute(select(func.max(rows.c.id))).scalar() or 0 for kind, rows in SEQUENCES.items()
    }


def advance(
    session: Session,
    rule_id: str,
    trigger_hash: str,
    mark: Watermark,
    now: datetime,
    summary: dict[str, Any],
) -> None:
    """Record what this tick covered. Never moves the time mark backwards (a `--now` in the past)."""
    state = session.get(RuleState, rule_id)
    if state is None:
        state = RuleState(rule_id=rule_id, trigger_hash=trigger_hash, evaluated_until=mark.until)
        session.add(state)
    if state.trigger_hash != trigger_hash:
        state.trigger_hash, state.evaluated_until, state.event_seq = trigger_hash, mark.until, 0
        state.change_position = 0
    state.evaluated_until = max(state.evaluated_until, mark.until)
    state.event_seq = max(state.event_seq, mark.seq)
    state.change_position = max(state.change_position, mark.changes)
    state.last_tick_at = now
    state.last_summary = summary
    session.flush()


def all_states(session: Session) -> dict[str, RuleState]:
    return {state.rule_id: state for state in session.execute(select(RuleState)).scalars()}
