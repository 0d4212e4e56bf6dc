"""`automator explain`: every check between one contact and one rule, in the order the
engine makes them, with the value each saw, and the verdict a tick at `now` would reach.

The occurrence is the one the tick's own lookup finds for the contact (`store.explained`),
else the contact's latest; the checks use the engine's compiled conditions and pure
re-checks, so that the explanation and the tick agree. Nothing is stored or sent."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from typing import Any

from sqlmodel import Session

from automator.config import Settings
from automator.errors import NotFoundError
from automator.explaining import checks
from automator.explaining.checks import Check
from automator.explaining.occurrences import Occurrence, from_candidate, latest
from automator.model import Rule
from automator.moments import at, shown_in, shown_zone
from automator.status import Status
from automator.store import Store, contacts, events, explained, messages, suppressions
from automator.store.journeys import WENT, step_occurrence, stopped
from automator.tables import Contact, Message

WOULD_QUEUE, WOULD_HOLD, QUEUED, HELD, SENT, NOT_YET_DUE, NOT_ELIGIBLE = (
    "would queue now",
    "would be held",
    "queued",
    "held",
    "sent",
    "not yet due",
    "not eligible",
)


@dataclass
class Explanation:
    """What `explain` found: the checks in order and the verdict, with its reason."""

    rule: str
    contact: str
    now: datetime
    checks: list[Check] = field(default_factory=list)
    verdict: str = NOT_ELIGIBLE
    reason: str = ""
    step: int = 1  # of a journey: the step the verdict is about (what `preview` renders)

    @property
    def headline(self) -> str:
        """The verdict as one line: "sent (message 4 at …)", "not eligible: …"."""
        if self.verdict in (QUEUED, HELD, SENT, NOT_YET_DUE):
            return f"{self.verdict} ({self.reason})"
        return f"{self.verdict}: {self.reason}" if self.reason else self.verdict

    @property
    def eligible(self) -> bool:
        """Whether the message would go out (or went) as of `now`."""
        return self.verdict in (WOULD_QUEUE, QUEUED, SENT)

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "contact": self.contact,
            "now": self.now.isoformat(),
            "checks": [vars(check) for check in self.checks],
            "verdict": self.verdict,
            "reason": self.reason,
        }


def explain(
    store: Store,
    settings: Settings,
    rule: Rule,
    email: str,
    now: datetime,
    runs: bool = True,
    zone: tzinfo | None = None,
) -> Explanation:
    """Explain `rule` for the contact `email` as of `now`; `runs`: the rule is enabled and
    its templates parse (else nothing of it is queued). Times show in `zone` (the console's
    viewer's), else in UTC ("…Z")."""
    with store.session() as session, shown_in(zone):
        contact = contacts.by_email(session, email)
        if contact is None:
            raise NotFoundError(f"no contact with email {email}")
        return _Explaining(session, settings, rule, contact, now).run(runs)


class _Explaining:
    """One explanation being made: the checks so far and the first that failed."""

    def __init__(
        self, session: Session, settings: Settings, rule: Rule, contact: Contact, now: datetime
    ) -> None:
        self.session, self.settings, self.rule, self.contact, self.now = session, settings, rule, contact, now
        self.result = Explanation(rule.id, contact.email, now)
        self.failed: tuple[str, str] | None = None  # the verdict and reason of the first failing check
        self.mine: list[Message] = []  # the contact's messages of the rule

    def add(self, check: Check, verdict: str = NOT_ELIGIBLE, reason: str | None = None) -> None:
        self.result.checks.append(check)
        if check.passed is False and self.failed is None:
            self.failed = (verdict, reason or f"{check.check}: {check.saw}")

    @property
    def stopping(self) -> str | None:
        """The first failed check that the dispatcher also makes before it sends a queued
        message (the address suppressed, a cancelling event, the goal reached, the contact's
        stage changed), as `check: what it saw`; None when none failed."""
        failed = [check for check in self.result.checks if check.passed is False]
        events = [check for check in failed if check.check.startswith(("cancel_if ", "goal "))]
        first = next(iter(events + [check for check in failed if check.check in STOPPING]), None)
        return None if first is None else f"{first.check}: {first.saw}"

    def run(self, runs: bool) -> Explanation:
        session, rule, contact, now = self.session, self.rule, self.contact, self.now
        contact_id = contact.id or 0
        self.add(
            Check("rule runs", runs, "yes" if runs else _why_not_running(rule), "enabled, templates parse")
        )
        self.add(checks.stage(session, rule, contact, now))
        found = explained.due_occurrences(session, rule, contact_id, now, self.settings.zone)
        occurrence = (
            from_candidate(rule, found[0])
            if found
            else latest(session, rule, contact, now, self.settings.zone)
        )
        event = None
        if isinstance(occurrence, Occurrence) and occurrence.event_id is not None:
            event = session.get(events.Event, occurrence.event_id)
        for cond in rule.when:
            self.add(checks.condition(session, cond, contact, event, now))
        if isinstance(occurrence, str):
            self.add(Check("trigger", False, occurrence, _trigger_expected(rule)))
            return self.finish(None)
        self.add(Check("trigger", True, occurrence.shown, _trigger_expected(rule)))
        moment = occurrence.occurred_at + rule.offset
        if moment > now:
            self.add(checks.due(rule, occurrence, now), NOT_YET_DUE, f"due at {at(moment)}")
        else:
            self.add(
                checks.due(rule, occurrence, now),
                reason=f"too late: due at {at(moment)}, max lateness passed",
            )
        for check in checks.stops(session, rule, contact_id, occurrence, now):
            self.add(check, reason=f"{check.check}: {check.saw}")
        limit = checks.limit(session, rule, contact_id, occurrence)
        if limit is not None:
            self.add(limit)
        # As of `now`: a message queued after it was not there yet.
        ever = [m for m in messages.for_contact(session, contact_id) if m.rule_id == rule.id]
        self.mine = mine = [m for m in ever if m.created_at <= now]
        check, message = checks.dedupe(occurrence, mine)
        _, later = checks.dedupe(occurrence, [m for m in ever if m.created_at > now])
        self.result.checks.append(check)
        suppressed = suppressions.get(session, contact.email)
        self.add(
            checks.suppression(suppressed.reason if suppressed else None), reason="address is suppressed"
        )
        if message is None and later is not None:
            # The lookup reads the store as it is now, which holds the message queued since.
            saw = f"message {later.id} was queued for it at {at(later.created_at)}, after this time"
            self.add(Check("engine lookup", None, saw, "a due occurrence"))
        elif message is None:
            # After a failed check the lookup finds nothing too: that agrees, it is no new reason.
            passed = True if found else (None if self.failed else False)
            self.add(Check("engine lookup", passed, _lookup_saw(found), "a due occurrence"))
        self.result.checks.extend(checks.journey(session, rule, contact_id, now))
        return self.finish(message, moment)

    def finish(self, message: Message | None, moment: datetime | None = None) -> Explanation:
        """The verdict: the message this occurrence has, else the first failing check, else
        held for want of a coupon, else queued now (after the quiet hours and the cap, which
        make it wait, not stop)."""
        result = self.result
        if message is not None:
            result.verdict, result.reason = self._messaged(message)
            stopping = self.stopping
            if result.verdict in (QUEUED, HELD) and stopping is not None:
                # The dispatcher checks these again before it sends, and does not send.
                result.verdict, result.reason = (
                    NOT_ELIGIBLE,
                    f"{result.reason}, but {stopping}: it will not go",
                )
        elif self.failed is not None:
            result.verdict, result.reason = self.failed
        else:
            assert moment is not None
            coupon = checks.coupon(self.session, self.rule, self.contact.id or 0)
            if coupon is not None:
                result.checks.append(coupon)
            if coupon is not None and not coupon.passed:
                result.verdict, result.reason = WOULD_HOLD, f"coupon {coupon.saw}"
            else:
                result.verdict, result.reason = WOULD_QUEUE, self._waits(moment)
        return result

    def _messaged(self, message: Message) -> tuple[str, str]:
        """The verdict on an occurrence messaged already: its message's; for a journey, its
        furthest step's, or once that one went, the next step's, as the tick's step lookup
        finds it."""
        steps = len(self.rule.journey)
        if steps == 1:
            return _of_message(self.session, message, self.now)
        mine = {m.step: m for m in self.mine if m.occurrence == step_occurrence(message.occurrence, m.step)}
        last = mine[max(mine)]
        self.result.step = last.step
        if last.status not in WENT or last.step == steps or last.sent_at is None or last.sent_at > self.now:
            verdict, reason = _of_message(self.session, last, self.now)
            return verdict, f"step {last.step} of {steps}: {reason}"
        following = self.result.step = last.step + 1
        of = f"step {following} of {steps}"
        ended = stopped(self.session, self.rule, self.contact.id or 0, last, shown_zone(), self.now)
        if ended:
            return NOT_ELIGIBLE, f"the journey ended after step {last.step} of {steps}: {ended}"
        due = last.sent_at + self.rule.step(following).delay
        self._going_on(message, last, following, due)
        if due > self.now:
            return NOT_YET_DUE, f"{of} due at {at(due)}"
        found = explained.due_step(self.session, self.rule, following, self.contact.id or 0, self.now)
        candidate = next((c for c in found if c.occurrence == message.occurrence), None)
        if candidate is None:
            return NOT_ELIGIBLE, f"too late: {of} was due at {at(due)}, max lateness passed"
        if candidate.suppressed:
            return NOT_ELIGIBLE, "address is suppressed"
        if candidate.skip:
            return NOT_ELIGIBLE, f"{of} would be {candidate.skip}; the journey goes on"
        waits = self._waits(due)
        return WOULD_QUEUE, f"{of}; {waits}" if waits else of

    def _going_on(self, message: Message, last: Message, following: int, due: datetime) -> None:
        """The checks of the journey's next step. The trigger's send time and the message it
        has say how the journey began, no longer why this step would not go: they stay, as
        facts (neither passed nor failed)."""
        began = {"due", "already messaged"}
        self.result.checks = [
            replace(c, passed=None, saw=f"step 1: {c.saw}") if c.check in began else c
            for c in self.result.checks
        ]
        event = self.session.get(events.Event, message.event_id) if message.event_id is not None else None
        self.result.checks.append(checks.step_due(self.rule, last, following, due, self.now))
        self.result.checks += checks.step_conditions(
            self.session, self.rule, following, self.contact, event, self.now
        )

    def _waits(self, moment: datetime) -> str:
        quiet = checks.quiet_hours(self.settings, self.contact, moment, self.now)
        cap, until = checks.frequency_cap(self.session, self.settings, self.contact.id or 0, self.now)
        self.result.checks += [quiet, cap]
        if not quiet.passed:
            return f"waits for the quiet hours to end ({quiet.saw})"
        if until is not None:
            return f"waits for the frequency cap until {at(until)} ({cap.saw})"
        return ""


STOPPING = frozenset({"suppression", "stage"})


def _of_message(session: Session, message: Message, now: datetime) -> tuple[str, str]:
    """The verdict of a message as of `now`: one sent or held after it was queued then."""
    if message.status == Status.HELD:
        assert message.id is not None
        holds = [line for line in messages.history(session, message.id) if line.status == Status.HELD]
        before = [line for line in holds if line.at <= now]
        if not before:
            held = f"held at {at(holds[0].at)}" if holds else "held since"
            return QUEUED, f"message {message.id}, to go at {at(message.send_at)} ({held})"
        return HELD, f"message {message.id}: {before[-1].reason}; it goes out once released"
    if message.status == Status.SENT and message.sent_at is not None and message.sent_at > now:
        return (
            QUEUED,
            f"message {message.id}, to go at {at(message.send_at)} (it went at {at(message.sent_at)})",
        )
    if message.status == Status.SENT:
        return SENT, f"message {message.id} at {at(message.sent_at)}"
    if message.status == Status.QUEUED:
        return QUEUED, f"message {message.id}, to go at {at(message.send_at)}"
    return NOT_ELIGIBLE, f"already {message.status}: message {message.id}"


def _why_not_running(rule: Rule) -> str:
    return "no: enabled: false" if not rule.enabled else "no: a template does not parse (see automator check)"


def _trigger_expected(rule: Rule) -> str:
    return f"an occurrence due by now, at most {checks.format_duration(rule.lateness)} late"


def _lookup_saw(found: list[Any]) -> str:
    if not found:
        return "the tick's lookup finds no due occurrence for this contact"
    return f"the tick's lookup finds {len(found)} due occurrence(s)"
