"""Everything that can stop or delay a message just before it goes out, as pure functions of
what a claim reads for its whole batch (`Facts`): a `Verdict` per message, which the claim
then writes. Nothing here reads the database or the clock."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from automator import policies
from automator.anniversaries import anniversary, local_year
from automator.config import Settings
from automator.model import DateTrigger, EventTrigger, Rule
from automator.status import HoldKind, Status
from automator.store.claims import Due
from automator.store.contacts import Recipient
from automator.store.events import Seen

RULE_MISSING_RETRY = timedelta(minutes=10)
UTC_ZONE = ZoneInfo("UTC")


@dataclass
class Facts:
    """What the re-checks of one claimed batch read, loaded once for the batch."""

    rules: dict[str, Rule | None]  # the batch's rules by id (None: does not load)
    runnable: set[str]  # ids of the rules that run (enabled, template parses)
    suppressed: set[str]
    # Per contact, by time: the events of the types the batch's rules look at, from the
    # earliest moment one of them could stop a message of the batch (`window_start`).
    events: dict[int, list[Seen]]
    own_events: dict[int, Seen]  # the events that triggered the batch's messages (for latest_per)
    dates: dict[int, dict[str, datetime]]  # per contact, date attributes (for date triggers)
    sent: dict[int, list[datetime]]  # per contact, send times inside the frequency-cap window


@dataclass(frozen=True)
class Verdict:
    """What the re-checks decided for one message: send it now (`status` None), or move it
    to `status` and say why."""

    outcome: str | None  # for the tick's summary ("cancelled: superseded"); None: send it
    status: Status | None = None
    reason: str = ""
    hold_kind: HoldKind | None = None
    until: datetime | None = None  # a wait's end: the new send time
    expires_at: datetime | None = None  # a wait moves the deadline with it
    repeat_quietly: bool = False  # the same reason as last time: move the send time only


SEND = Verdict(None)


@dataclass(frozen=True)
class Cancel:
    """Why a message will never be sent: `kind` for counts, `reason` for its history."""

    kind: str
    reason: str


def recheck_batch(batch: list[Due], now: datetime, facts: Facts, settings: Settings) -> list[Verdict]:
    """Each message's verdict, in the batch's order: the messages an earlier one of the same
    contact sends count for the frequency cap as sent now."""
    going: Counter[int] = Counter()
    verdicts = []
    for message in batch:
        verdict = recheck(message, now, facts, settings, going[message.contact_id])
        if verdict.status is None:
            going[message.contact_id] += 1
        verdicts.append(verdict)
    return verdicts


def recheck(message: Due, now: datetime, facts: Facts, settings: Settings, claimed: int = 0) -> Verdict:
    """The verdict for one message; `claimed` is how many of its contact's messages this
    batch sends already (they count for the frequency cap as sent now)."""
    if message.email in facts.suppressed:
        return Verdict("suppressed", Status.SUPPRESSED, "address is suppressed")
    if now > message.expires_at:
        late = f"too late: due {message.due_at.isoformat()}, max lateness passed"
        return Verdict("cancelled: too late", Status.CANCELLED, late)
    rule = facts.rules[message.rule_id]
    if rule is not None and not rule.enabled:
        disabled = f"rule '{rule.id}' is disabled (enabled: false)"
        return Verdict("held: rule disabled", Status.HELD, disabled, hold_kind=HoldKind.RULE)
    if rule is None or rule.id not in facts.runnable:
        reason = f"waiting: rule '{message.rule_id}' does not load (see automator check)"
        until = now + RULE_MISSING_RETRY
        return Verdict("waiting: rule does not load", Status.QUEUED, reason, until=until, repeat_quietly=True)
    zone = policies.contact_zone(settings, message.contact)
    cancel = cancel_reason(rule, message, message.contact, now, facts, zone)
    if cancel is not None:
        return Verdict(f"cancelled: {cancel.kind}", Status.CANCELLED, cancel.reason)
    return defer(message, rule, now, facts.sent.get(message.contact.id, []), claimed, settings)


def cancel_reason(
    rule: Rule, message: Due, contact: Recipient, now: datetime, facts: Facts, zone: ZoneInfo = UTC_ZONE
) -> Cancel | None:
    """Whether something that happened since it was queued means the message must not go;
    `zone` is the contact's (else the project's), in which a yearly date's day is read."""
    trigger = rule.trigger
    history = facts.events.get(contact.id, [])
    for cancel in trigger.cancel_if:
        found = _cancelling_event(
            cancel.event, _cancel_since(rule, message, cancel.within), rule, history, now
        )
        if found is not None:
            return Cancel(found.type, f"{found.type}: {found.type} at {found.at.isoformat()} ({found.key})")
    goal = rule.stopping_goal
    if goal is not None:
        found = _cancelling_event(goal.event, _cancel_since(rule, message, None), rule, history, now)
        if found is not None:
            why = f"goal reached: {found.type} at {found.at.isoformat()} ({found.key})"
            return Cancel("goal reached", why + _journey_ends(rule, message))
    if isinstance(trigger, EventTrigger) and trigger.latest_per and message.event_id:
        newer = _newer_of_same(facts.own_events.get(message.event_id), history, trigger.latest_per, now)
        if newer is not None:
            why = f"superseded: a newer {newer.type} at {newer.at.isoformat()} ({newer.key})"
            return Cancel("superseded", why)
    if isinstance(trigger, DateTrigger):
        current = facts.dates.get(contact.id, {}).get(trigger.attribute)
        if current is not None and trigger.yearly:  # the same month and day, in the message's year
            current = anniversary(current, zone, local_year(message.occurred_at, zone))
        if current != message.occurred_at:
            shown = current.isoformat() if current else "removed"
            return Cancel("date changed", f"date changed: {trigger.attribute} is now {shown}")
    if contact.stage not in rule.stages:
        why = f"stage changed: contact is in {contact.stage}, rule targets {', '.join(rule.stages)}"
        return Cancel("stage changed", why + _journey_ends(rule, message))
    return None


def _journey_ends(rule: Rule, message: Due) -> str:
    """What a cancelled step means for the rest of its journey, for its history."""
    if message.step < len(rule.journey):
        return f"; the journey ends at step {message.step} of {len(rule.journey)}"
    return ""


def window_start(message: Due, rule: Rule | None) -> datetime:
    """The earliest moment an event that stops the message can have happened: none before
    it is read for its batch."""
    if rule is None or not isinstance(rule.trigger, DateTrigger):
        return message.occurred_at  # every window of an event's message begins at the event
    withins = [cancel.within for cancel in rule.trigger.cancel_if] + [None]
    return min(*(_cancel_since(rule, message, within) for within in withins), message.occurred_at)


def _cancel_since(rule: Rule, message: Due, within: timedelta | None) -> datetime:
    """Where the window of cancelling events begins: at the trigger event (after it), or
    for a date trigger `within` before the date (else when it was first due), inclusive."""
    if isinstance(rule.trigger, DateTrigger):
        return message.occurred_at - within if within is not None else message.occurred_at + rule.offset
    return message.occurred_at


def _cancelling_event(
    kind: str, since: datetime, rule: Rule, history: list[Seen], now: datetime
) -> Seen | None:
    """The first event of `kind` in the window that cancels the message: after its trigger
    event, or for a date trigger from `since` on."""
    inclusive = isinstance(rule.trigger, DateTrigger)
    return next(
        (
            e
            for e in history
            if e.type == kind and e.at <= now and (e.at >= since if inclusive else e.at > since)
        ),
        None,
    )


def defer(
    message: Due, rule: Rule, now: datetime, sent_before: list[datetime], claimed: int, settings: Settings
) -> Verdict:
    """Quiet hours and the frequency cap make a message wait; they never drop it."""
    if message.skip_policies:
        return SEND
    quiet = policies.planned_send_at(settings, message.contact, now)
    if quiet > now:
        return _wait(message, rule, quiet, "quiet hours in the contact's time zone", "waiting: quiet hours")
    cap = settings.frequency_cap
    if cap is not None:
        # Messages claimed earlier in this batch count as sent now.
        until = policies.cap_until(sent_before + [now] * claimed, cap.max, cap.per, now)
        if until is not None:
            until = policies.planned_send_at(settings, message.contact, until)
            why = f"frequency cap ({cap.max} per {_hours(cap.per)})"
            return _wait(message, rule, until, why, "waiting: frequency cap")
    return SEND


def _wait(message: Due, rule: Rule, until: datetime, why: str, outcome: str) -> Verdict:
    return Verdict(
        outcome,
        Status.QUEUED,
        f"waiting until {until.isoformat()}: {why}",
        until=until,
        expires_at=max(message.expires_at, until + rule.lateness),
    )


def _newer_of_same(event: Seen | None, history: list[Seen], key: str, now: datetime) -> Seen | None:
    """A later event of the same type with the same `key` property (e.g. the same cart)."""
    value = event.groups.get(key) if event is not None else None
    if event is None or value is None:
        return None  # events without the property are each their own group (as when queued)
    return next(
        (
            other
            for other in history
            if other.type == event.type and event.at < other.at <= now and other.groups.get(key) == value
        ),
        None,
    )


def _hours(value: timedelta) -> str:
    hours = value.total_seconds() / 3600
    return f"{hours:g}h"
