"""Each check between a contact and a rule, as `explain` shows it: what it saw, what the
rule expects, whether it passed. The tests are the engine's own: the compiled conditions
(`store.explained.holds`), the cancelling windows of `dispatch.rechecks`, the limit's count
of `enqueue`, its choice of a coupon, and the policies' arithmetic (`policies`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlmodel import Session

from automator import policies
from automator.config import Settings
from automator.durations import format_duration
from automator.explaining.occurrences import Occurrence
from automator.model import AnyCondition, DateTrigger, HistoryCondition, Rule
from automator.model_base import CONTACT_COLUMNS
from automator.moments import at, shown_zone
from automator.status import COUNTED
from automator.store import claims, contacts, coupons, events, explained, journeys
from automator.tables import Contact, Event, Message


@dataclass(frozen=True)
class Check:
    """One check: `passed` None when it only informs (a journey's place)."""

    check: str
    passed: bool | None
    saw: str
    expected: str = ""


def stage(session: Session, rule: Rule, contact: Contact, now: datetime) -> Check:
    """The contact's stage as of `now` (its stage history), and since when it differs."""
    then = contacts.stage_at(session, contact, now)
    saw = then or "none"
    if then != contact.stage:
        saw += f" (in {contact.stage or 'none'} since)"
    return Check("stage", then in rule.stages, saw, f"one of {', '.join(rule.stages)}")


def condition(
    session: Session, cond: AnyCondition, contact: Contact, event: Event | None, now: datetime
) -> Check:
    """One `when` condition, evaluated by its compiled SQL for this contact and event."""
    if isinstance(cond, HistoryCondition):
        since = now - cond.within if cond.within is not None else datetime.min.replace(tzinfo=now.tzinfo)
        found = events.seen_between(session, [contact.id or 0], [cond.event], since, now)
        seen = [e for e in found.get(contact.id or 0, []) if cond.within is None or e.at > since]
        span = f" in the last {format_duration(cond.within)}" if cond.within else ""
        passed = explained.holds(session, cond, contact.id or 0, None, now)
        return Check(
            f"history {cond.event}", passed, f"{len(seen)} event(s){span}", f"count {cond.op} {cond.count}"
        )
    expected = f"{cond.op} {_value(cond.value)}"
    if cond.scope == "event" and event is None:
        return Check(f"when {cond.field}", None, "no trigger event to test", expected)
    passed = explained.holds(session, cond, contact.id or 0, event.id if event else None, now)
    return Check(f"when {cond.field}", passed, _actual(session, cond.field, contact, event), expected)


def _actual(session: Session, field: str, contact: Contact, event: Event | None) -> str:
    scope, name = field.split(".", 1)
    if field == "contact.tags":
        return ", ".join(contacts.tags(session, contact.id or 0)) or "no tags"
    if scope == "contact" and name in CONTACT_COLUMNS:
        return _value(getattr(contact, name))
    values: dict[str, Any] = contact.attributes if scope == "contact" else (event.properties if event else {})
    return _value(values[name]) if name in values else "(not set)"


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def due(rule: Rule, occurrence: Occurrence, now: datetime) -> Check:
    """The send time and the max-lateness window it must lie in."""
    moment = occurrence.occurred_at + rule.offset
    return Check("due", now - rule.lateness <= moment <= now, at(moment), _window(rule, now))


def step_due(rule: Rule, before: Message, step: int, moment: datetime, now: datetime) -> Check:
    """A journey's step after `before` (a step that went), due at `moment` (its delay after
    that one was sent), in the same max-lateness window as the trigger's."""
    after = f"{format_duration(rule.step(step).delay)} after step {before.step} went ({at(before.sent_at)})"
    return Check(
        f"step {step} due", now - rule.lateness <= moment <= now, at(moment), f"{after}, {_window(rule, now)}"
    )


def step_conditions(
    session: Session, rule: Rule, step: int, contact: Contact, event: Event | None, now: datetime
) -> list[Check]:
    """The `when` of a journey's step, tested as the step lookup tests it: one that does not
    hold skips the step, and the journey goes on."""
    found = []
    for cond in rule.step(step).when:
        check = condition(session, cond, contact, event, now)
        found.append(replace(check, check=f"step {step} {check.check}"))
    return found


def _window(rule: Rule, now: datetime) -> str:
    return f"between {at(now - rule.lateness)} and {at(now)} (max lateness {format_duration(rule.lateness)})"


def stops(
    session: Session, rule: Rule, contact_id: int, occurrence: Occurrence, now: datetime
) -> list[Check]:
    """`cancel_if` and the goal: an event of the type in the window that stops the message
    (after the trigger; for a date trigger from `within` before it, else from when it fires)."""
    found = []
    for cancel in rule.trigger.cancel_if:
        event = _stopping(session, rule, contact_id, cancel.event, occurrence, now, cancel.within)
        found.append(_stop_check(f"cancel_if {cancel.event}", event))
    goal = rule.stopping_goal
    if goal is not None:
        event = _stopping(session, rule, contact_id, goal.event, occurrence, now, None)
        found.append(_stop_check(f"goal {goal.event}", event))
    return found


def _stopping(
    session: Session,
    rule: Rule,
    contact_id: int,
    kind: str,
    occurrence: Occurrence,
    now: datetime,
    within: Any,
) -> Any:
    dated = isinstance(rule.trigger, DateTrigger)
    since = occurrence.occurred_at
    if dated:
        since = since - within if within is not None else since + rule.offset
    seen = events.seen_between(session, [contact_id], [kind], since, now).get(contact_id, [])
    return next((e for e in seen if dated or e.at > since), None)


def _stop_check(name: str, event: Any) -> Check:
    if event is None:
        return Check(name, True, "no such event since the trigger", "none")
    return Check(name, False, f"{event.type} at {at(event.at)} ({event.key})", "none")


def limit(session: Session, rule: Rule, contact_id: int, occurrence: Occurrence) -> Check | None:
    """How many journeys of the rule the contact began in the span before this one's due time."""
    if rule.limit is None:
        return None
    moment = occurrence.occurred_at + rule.offset
    since = moment - rule.limit.per
    begun = journeys.started(session, rule.id, [contact_id], since, COUNTED).get(contact_id, [])
    counted = journeys.in_span(begun, moment, rule.limit.per)
    per = format_duration(rule.limit.per)
    saw = f"{len(counted)} in the {per} before {at(moment)}" + (
        f", last on {at(max(counted))}" if counted else ""
    )
    return Check("limit", len(counted) < rule.limit.max, saw, f"fewer than {rule.limit.max} per {per}")


def dedupe(occurrence: Occurrence, mine: list[Message]) -> tuple[Check, Message | None]:
    """Whether this occurrence has a message already: which, in what status, when."""
    message = next((m for m in mine if occurrence.messaged_by(m)), None)
    if message is None:
        others = f" ({len(mine)} for other occurrences)" if mine else ""
        return Check("already messaged", True, f"no message for this occurrence{others}", "none"), None
    when = message.sent_at or message.send_at
    saw = f"message {message.id}, {message.status} {at(when)}"
    return Check("already messaged", False, saw, "none"), message


def suppression(suppressed: str | None) -> Check:
    return Check("suppression", suppressed is None, suppressed or "not suppressed", "not suppressed")


def quiet_hours(settings: Settings, contact: Contact, moment: datetime, now: datetime) -> Check:
    """The contact's local time and, inside the quiet hours, when they end."""
    zone = policies.contact_zone(settings, contact)
    local = f"{now.astimezone(zone):%H:%M} in {zone.key}"
    if settings.quiet_hours is None:
        return Check("quiet hours", True, local, "no quiet hours")
    window = f"outside {settings.quiet_hours.start:%H:%M}–{settings.quiet_hours.end:%H:%M} local time"
    send_at = policies.planned_send_at(settings, contact, max(moment, now))
    if send_at > now:
        return Check("quiet hours", False, f"{local}; they end at {at(send_at)}", window)
    return Check("quiet hours", True, local, window)


def frequency_cap(
    session: Session, settings: Settings, contact_id: int, now: datetime
) -> tuple[Check, datetime | None]:
    """How many messages went to the contact in the cap's window, and when one more may go."""
    cap = settings.frequency_cap
    if cap is None:
        return Check("frequency cap", True, "no frequency cap", ""), None
    sent = claims.sent_times(session, {contact_id}, now - cap.per, now).get(contact_id, [])
    until = policies.cap_until(sent, cap.max, cap.per, now)
    expected = f"fewer than {cap.max} per {format_duration(cap.per)}"
    saw = f"{len(sent)} sent in the last {format_duration(cap.per)}" + (
        f"; next at {at(until)}" if until else ""
    )
    return Check("frequency cap", until is None, saw, expected), until


def coupon(session: Session, rule: Rule, contact_id: int) -> Check | None:
    """The coupon the contact's message would take: a pool with no free code holds it
    (`when_empty: hold`), as queueing does (`enqueue._choose_coupons`)."""
    send = rule.step(1).send
    spec = rule.sending(1, send.choose(rule.id, contact_id)).coupon
    if spec is None or spec.pool is None:
        return None
    free = coupons.free_count(session, spec.pool)
    if free == 0 and spec.when_empty == "hold":
        return Check(
            "coupon", False, f"pool '{spec.pool}' has no free code", "a free code (when_empty: hold)"
        )
    fallback = "; a generated code when none is left" if spec.when_empty == "generate" else ""
    return Check("coupon", True, f"{free} free code(s) in pool '{spec.pool}'{fallback}", "a free code")


def journey(session: Session, rule: Rule, contact_id: int, now: datetime) -> list[Check]:
    """For a journey: where the contact was in it as of `now`."""
    if not rule.steps:
        return []
    places = journeys.positions(session, [rule], contact_id, rule.id, shown_zone(), now)
    text = places[0].text if places else "not begun"
    return [Check("journey", None, text, f"{len(rule.journey)} steps")]
