"""The pages support staff read: the queue, a message, a contact, contact search, the rules."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from automator import letters
from automator.console import display
from automator.console.auth import Viewer
from automator.console.state import Console, Cursor, RowId, allowed, console_of, render
from automator.errors import AutomatorError, NotFoundError, RuleError, TemplateError, UnsafeHeaderError
from automator.explain import Explanation, explain
from automator.model import Rule
from automator.project import Project
from automator.rules import describe_trigger
from automator.status import CANCEL, HOLD, NEEDS_COMPLETING, RELEASE, SEND_NOW, HoldKind
from automator.store import audit, contacts, coupons, events, journeys, messages, rulestate, suppressions
from automator.store import console as console_queries
from automator.tables import Message, RuleState

router = APIRouter()
log = logging.getLogger("automator.console")

PAGE_SIZE = 50

NOTICES = {
    "hold": "Held. It will not be sent until someone releases it.",
    "release": "Released: it is back in the queue.",
    "cancel": "Cancelled: it will never be sent.",
    "send-now": "It will be sent at the next dispatch, past quiet hours and the frequency cap.",
    "suppress": "Suppressed: this address gets nothing more from any rule.",
    "unsuppress": "Suppression removed: rules may email this address again.",
}
# Why no action applies to a message in a status (the page says so instead of nothing).
FINAL = {
    "sending": "It is being sent now: it can no longer be held or cancelled.",
    "sent": "Sent mail cannot be held or cancelled: it has gone out.",
    "failed": "It failed for good and is not retried: it cannot be held, released or cancelled.",
    "cancelled": "It was cancelled and will never be sent: nothing more can be done to it.",
    "suppressed": "Its address is suppressed, so it will never be sent: it cannot be held or cancelled.",
    "skipped": "Its rule skipped it, so it will never be sent: it cannot be held or cancelled.",
}
# The status each message action leaves a message in. Its notice shows only while the
# message is still in it: the back button to the page after a hold must not say "Held."
# above a message released since.
LEAVES = {"hold": HOLD.to, "release": RELEASE.to, "cancel": CANCEL.to, "send-now": SEND_NOW.to}


@router.get("/")
def home() -> Response:
    return RedirectResponse("/queue", status_code=303)


@dataclass
class QueueQuery:
    """The queue page's filters as typed in the query string."""

    status: str = ""
    rule: str = ""
    q: str = ""
    since: str = ""
    until: str = ""

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)

    def selection(self, viewer: Viewer) -> console_queries.MessageFilter:
        """The store's filter; days are in the viewer's zone, `until` includes its day."""
        if self.status and self.status not in messages.STATUSES:
            raise AutomatorError(f"unknown status '{self.status}'")
        since = _day("Queued from", self.since, viewer.zone)
        until = _day("to", self.until, viewer.zone, days=1)
        if since is not None and until is not None and since >= until:
            raise AutomatorError(f"“Queued from” ({self.since}) is after “to” ({self.until}): swap them")
        return console_queries.MessageFilter(self.status or None, self.rule or None, self.q, since, until)


def _day(field: str, text: str, zone: tzinfo, days: int = 0) -> datetime | None:
    """The start of the day typed in the filter `field` (as the page labels it)."""
    try:
        return display.day_start(text, zone, days)
    except ValueError as exc:
        raise AutomatorError(f"“{field}”: {exc}") from None


@router.get("/queue")
def queue_page(
    request: Request,
    viewer: Viewer = Depends(allowed("view")),
    filters: QueueQuery = Depends(),
    before: Cursor = None,
    after: Cursor = None,
    done: str = "",
    touched: int = 0,
    already: int = 0,
) -> Response:
    """Every message, newest first, filtered, counted by status, a page at a time."""
    console = console_of(request)
    error: str | None = None
    try:
        where = filters.selection(viewer)
    except AutomatorError as exc:
        where, error = console_queries.MessageFilter(), str(exc)
    with console.store.session() as session:
        found = console_queries.page(session, where, before, after, PAGE_SIZE)
        counts = console_queries.counts_by_status(session, where)
    notice = _bulk_notice(done, touched, already)
    return render(
        request,
        viewer,
        "queue.html",
        section="queue",
        page=found,
        counts=counts,
        total=sum(counts.values()),
        statuses=messages.STATUSES,
        rule_ids=_rule_ids(console.project),
        filters=filters.as_dict(),
        error=error,
        notice=notice,
    )


BULK_DONE = {"hold": "Held", "cancel": "Cancelled"}


def _bulk_notice(done: str, touched: int, already: int) -> str | None:
    """'Held 3 messages.'; after a second click, what the first one did holds."""
    if done not in BULK_DONE:
        return None
    if touched == 0 and already > 0:
        are = "is" if already == 1 else "are"
        done_already = f"{are} {BULK_DONE[done].lower()} already"
        return f"Nothing changed: {_messages(already)} of this selection {done_already}."
    return f"{BULK_DONE[done]} {_messages(touched)}."


def _messages(count: int) -> str:
    return f"{count:,} message{'' if count == 1 else 's'}"


def _rule_ids(project: Project) -> list[str]:
    return sorted({rule.id for rule in project.ruleset.rules} | project.ruleset.broken_ids)


@router.get("/messages/{message_id}")
def message_page(
    request: Request, message_id: RowId, viewer: Viewer = Depends(allowed("view")), done: str = ""
) -> Response:
    return show_message(request, viewer, message_id, done=done)


def show_message(
    request: Request,
    viewer: Viewer,
    message_id: int,
    done: str = "",
    error: str | None = None,
    status: int = 200,
    reason: str = "",
    notice: str | None = None,
) -> Response:
    """A message as it will be sent (preview, text, headers), its contact, rule, coupon,
    status history and audit log, and the actions the viewer may take on it."""
    console = console_of(request)
    with console.store.session() as session:
        message = messages.get(session, message_id)
        if message is None:
            raise NotFoundError(f"message {message_id} does not exist")
        contact = contacts.by_id(session, message.contact_id)
        coupon = coupons.for_message(session, message_id)
        history = messages.history(session, message_id)
        content = messages.content(session, message_id)
        entries = audit.for_message(session, message_id)
    # The same builder the dispatcher uses; only Date is set again when it is sent.
    try:
        email = letters.build_stored(console.engine.settings, contact, message, content, message.send_at)
        headers, unsafe = [(name, str(value)) for name, value in email.parsed().items()], None
    except UnsafeHeaderError as exc:  # held for it: the page says why instead of failing
        headers, unsafe = [], str(exc)
    rule = console.project.rule(message.rule_id)
    if done in LEAVES and message.status == LEAVES[done]:
        notice = NOTICES[done]
    return render(
        request,
        viewer,
        "message.html",
        status=status,
        here=f"/messages/{message_id}",  # also after a refused action, whose page is its POST's
        section="queue",
        message=message,
        content=content,
        contact=contact,
        coupon=coupon,
        history=list(reversed(history)),
        entries=list(reversed(entries)),
        headers=headers,
        unsafe=unsafe,
        rule=rule,
        trigger=describe_trigger(rule) if rule else None,
        position=_position(rule, message),
        sending=_template(rule, message),
        actions=[action for action in _actions(message) if viewer.can(action[2])],
        locked=[label.lower() for _, label, permission in _actions(message) if not viewer.can(permission)],
        final=FINAL.get(message.status),
        notice=notice,
        error=error,
        reason=reason,
    )


def _position(rule: Rule | None, message: Message) -> str | None:
    """The step of a journey, "Step 2 of 3"; None for a message of a one-message rule."""
    if rule is None or rule.steps is None:
        return f"Step {message.step}" if message.step > 1 else None
    return f"Step {message.step} of {len(rule.steps)}"


def _template(rule: Rule | None, message: Message) -> str | None:
    """The template the message's step and variant send, by the rule as it is loaded now
    (None when the rule changed so that it has no such step or variant)."""
    if rule is None:
        return None
    try:
        return rule.sending(message.step, message.variant).template
    except (IndexError, KeyError, AssertionError):
        return None


def _actions(message: Message) -> list[tuple[str, str, str]]:
    """(path, label, permission) of the actions that apply to the message now; the same
    table automator.support asks. Support may release only a hold support placed."""
    found = []
    if HOLD.applies(message.status):
        found.append(("hold", "Hold", "hold"))
    if RELEASE.applies(message.status):
        found.append(
            ("release", "Release", "release" if message.hold_kind == HoldKind.SUPPORT else "release any hold")
        )
    if SEND_NOW.applies(message.status) and message.hold_kind not in NEEDS_COMPLETING:
        found.append(("send-now", "Send now", "send now"))
    if CANCEL.applies(message.status):
        found.append(("cancel", "Cancel", "cancel"))
    return found


@router.get("/contacts")
def contact_search(request: Request, q: str = "", viewer: Viewer = Depends(allowed("view"))) -> Response:
    """Find a contact by email or name: an exact address opens it, the start of one (or of a
    first or last name, in any case) lists the matches; a single match opens at once."""
    console = console_of(request)
    text = q.strip()
    with console.store.session() as session:
        exact = contacts.by_email(session, text) if text else None
        found, more = ([], False) if exact or not text else console_queries.contacts_matching(session, text)
    if exact is not None or (len(found) == 1 and not more):
        return RedirectResponse(f"/contacts/{(exact or found[0]).id}", status_code=303)
    return render(request, viewer, "contacts.html", contact_query=text, found=found, more=more)


@router.get("/contacts/{contact_id}")
def contact_page(
    request: Request, contact_id: RowId, viewer: Viewer = Depends(allowed("view")), done: str = ""
) -> Response:
    return show_contact(request, viewer, contact_id, done=done)


def show_contact(
    request: Request,
    viewer: Viewer,
    contact_id: int,
    done: str = "",
    error: str | None = None,
    status: int = 200,
    reason: str = "",
) -> Response:
    """A contact's profile, stage and its history, events, messages, suppression, audit log."""
    console = console_of(request)
    with console.store.session() as session:
        contact = contacts.by_id(session, contact_id)
        if contact is None:
            raise NotFoundError(f"contact {contact_id} does not exist")
        details = {
            "stages": list(reversed(contacts.stage_history(session, contact_id))),
            "tags": contacts.tags(session, contact_id),
            "dates": contacts.dates(session, contact_id),
            "events": events.for_contact(session, contact_id, limit=200),
            "messages": messages.for_contact(session, contact_id),
            "suppression": suppressions.get(session, contact.email),
            "entries": audit.for_contact(session, contact_id),
            "journeys": journeys.positions(
                session, console.project.ruleset.rules, contact_id, zone=viewer.zone
            ),
        }
    # As for a message: a notice only while it still holds.
    still = {"suppress": details["suppression"] is not None, "unsuppress": details["suppression"] is None}
    notice = NOTICES[done] if still.get(done) else None
    details["explained_at"] = now = console.clock()
    details["explanations"] = [
        _why(console, rule, contact.email, now, viewer.zone) for rule in console.project.ruleset.rules
    ]
    return render(
        request,
        viewer,
        "contact.html",
        status=status,
        here=f"/contacts/{contact_id}",
        contact=contact,
        reasons=suppressions.REASONS,
        notice=notice,
        error=error,
        reason=reason,
        **details,
    )


def _why(console: Console, rule: Rule, email: str, now: datetime, zone: tzinfo) -> Explanation:
    """The contact page's "Why not?" for one rule: `automator explain`'s checks and verdict,
    or, when the rule cannot be explained, why (also logged: the page still shows)."""
    runs = any(running.id == rule.id for running in console.project.rules)
    try:
        return explain(console.store, console.project.settings, rule, email, now, runs, zone)
    except Exception as exc:
        log.warning("rule %s could not be explained for %s", rule.id, email, exc_info=True)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Explanation(rule.id, email, now, verdict="could not be explained", reason=first)


@dataclass
class RuleRow:
    rule: Rule
    trigger: str
    running: bool
    state: RuleState | None
    activity: console_queries.RuleActivity
    errors: list[AutomatorError] = field(default_factory=list)


@router.get("/rules")
def rules_page(request: Request, viewer: Viewer = Depends(allowed("view"))) -> Response:
    """Each rule: trigger, last evaluation, the last 7 days' counts, and what `check` found."""
    console = console_of(request)
    project = console.project
    with console.store.session() as session:
        states = rulestate.all_states(session)
        activity = console_queries.activity_since(session, console.clock() - timedelta(days=7))
    rows: list[RuleRow] = []
    placed: set[int] = set()
    running = {rule.id for rule in project.rules}
    for rule in project.ruleset.rules:
        errors = [error for error in project.errors if _concerns(error, rule)]
        placed.update(map(id, errors))
        rows.append(
            RuleRow(
                rule,
                describe_trigger(rule),
                rule.id in running,
                states.get(rule.id),
                activity.get(rule.id, console_queries.RuleActivity()),
                errors,
            )
        )
    others = [error for error in project.errors if id(error) not in placed]
    return render(request, viewer, "rules.html", section="rules", rows=rows, others=others)


def _concerns(error: AutomatorError, rule: Rule) -> bool:
    if isinstance(error, RuleError):
        return error.file == rule.file
    if isinstance(error, TemplateError):
        return any(error.template.startswith(f"email_templates/{name}/") for name in rule.templates)
    return False
