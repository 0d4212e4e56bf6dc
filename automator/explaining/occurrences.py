"""The trigger occurrence an explanation is about: the one a tick would queue now (found by
the tick's own lookup, restricted to the contact), else the contact's latest one, which says
why nothing is due (not yet, too late, already messaged)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session

from automator.anniversaries import anniversary, local_year
from automator.model import DateTrigger, EventTrigger, Rule, ScheduleTrigger, StageTrigger
from automator.moments import at
from automator.schedules import last_fire
from automator.store import contacts, events
from automator.store.candidates import Candidate, once_per_value
from automator.tables import Contact, Message
from automator.timestamps import zone_named

LOOK_BACK = timedelta(days=400)  # how far back a schedule's last firing is looked for


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of a rule's trigger for a contact: when it happened, what it was (for
    people), its event, and its dedupe key when known (else messages match by its time)."""

    occurred_at: datetime
    shown: str
    event_id: int | None = None
    key: str | None = None
    # A `once_per` value too long to name the occurrence, under which an older release may
    # have queued its message: the lookups count that message too (`_event_query`).
    long_value: str | None = None

    def messaged_by(self, message: Message) -> bool:
        """Whether `message` (of the rule, for the contact) is this occurrence's first step."""
        if message.step != 1:
            return False
        if self.key is not None:
            return message.occurrence in (self.key, self.long_value)
        return message.occurred_at == self.occurred_at


def from_candidate(rule: Rule, candidate: Candidate) -> Occurrence:
    """The occurrence the tick's lookup found."""
    shown = _describe(rule, candidate.occurred_at, candidate.occurrence)
    return Occurrence(candidate.occurred_at, shown, candidate.event_id, candidate.occurrence)


def latest(
    session: Session, rule: Rule, contact: Contact, now: datetime, project_zone: ZoneInfo
) -> Occurrence | str:
    """The contact's latest occurrence by now (a yearly date: the year's whose send time is
    nearest before now, else the next), or why there is none."""
    trigger = rule.trigger
    contact_id = contact.id or 0
    if isinstance(trigger, EventTrigger):
        event = events.latest(session, contact_id, trigger.event, now)
        if event is None:
            return f"no {trigger.event} event by {at(now)}"
        key, long_value = event.key, None
        if trigger.once_per and (value := event.properties.get(trigger.once_per)) is not None:
            once = once_per_value(value)
            key, long_value = (key, str(value)) if once is None else (once, None)
        return Occurrence(event.at, _describe(rule, event.at, event.key), event.id, key, long_value)
    if isinstance(trigger, DateTrigger):
        value = contacts.dates(session, contact_id).get(trigger.attribute)
        if value is None:
            return f"no date in contact.{trigger.attribute}"
        if not trigger.yearly:
            return Occurrence(value, f"{trigger.attribute} {at(value)}")
        zone = zone_named(contact.timezone) or project_zone
        return this_year(rule, trigger, value, zone, now)
    if isinstance(trigger, StageTrigger):
        entered = [
            change
            for change in contacts.stage_history(session, contact_id)
            if change.to_stage == trigger.stage_entered and change.at <= now
        ]
        if not entered:
            return f"never entered stage {trigger.stage_entered}"
        change = entered[-1]
        return Occurrence(change.at, f"entered {change.to_stage} at {at(change.at)}", key=str(change.id))
    return _firing(rule, trigger, contact, now, project_zone)


def this_year(rule: Rule, trigger: DateTrigger, value: datetime, zone: ZoneInfo, now: datetime) -> Occurrence:
    """A yearly date's occurrence as of now: the latest one due by now while it may still
    go (its max lateness not passed); else the nearer of the one before and the next, so
    that a week before this year's birthday it is this year's, and a day after, this one."""
    year = local_year(now, zone)
    dated = [(anniversary(value, zone, y), y) for y in (year - 1, year, year + 1)]
    past = [(moment, y) for moment, y in dated if moment + rule.offset <= now]
    coming = [(moment, y) for moment, y in dated if moment + rule.offset > now]
    moment, chosen = coming[0] if coming else past[-1]
    if past and coming:
        since, until = now - (past[-1][0] + rule.offset), coming[0][0] + rule.offset - now
        if since <= rule.lateness or since < until:
            moment, chosen = past[-1]
    shown = f"{trigger.attribute} {value.astimezone(zone):%Y-%m-%d} → {chosen}'s: {at(moment)} ({zone.key})"
    return Occurrence(moment, shown, key=f"{trigger.attribute}@{chosen}")


def _firing(
    rule: Rule, trigger: ScheduleTrigger, contact: Contact, now: datetime, project_zone: ZoneInfo
) -> Occurrence | str:
    zone = (zone_named(contact.timezone) if trigger.timezone == "contact" else None) or project_zone
    fired = last_fire(
        trigger, zone, now, now - max(rule.lateness, LOOK_BACK if trigger.every is None else trigger.every)
    )
    if fired is None:
        return "the schedule has not fired"
    return Occurrence(fired, f"the schedule fired at {at(fired)} ({zone.key})")


def _describe(rule: Rule, moment: datetime, occurrence: str) -> str:
    trigger = rule.trigger
    if isinstance(trigger, EventTrigger):
        return f"{trigger.event} at {at(moment)} (key {occurrence})"
    if isinstance(trigger, DateTrigger):
        return f"{trigger.attribute} {at(moment)}"
    if isinstance(trigger, StageTrigger):
        return f"entered {trigger.stage_entered} at {at(moment)}"
    return f"the schedule fired at {at(moment)}"
