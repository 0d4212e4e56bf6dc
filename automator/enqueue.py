"""Turn a chunk of due trigger occurrences into queued, rendered messages, set-wise.

A chunk is written as one unit (a savepoint of the tick's transaction, see
`automator.pipeline.Writes`): choose the coupons, render, insert the messages under their
dedupe key (conflicts are skipped), then the inserted ones' content, coupons and one history
line each: a handful of statements per chunk, and each message row written once. Coupons
are allocated in the same transaction that records the dedupe key, so a re-run never issues
a second code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from automator import emails
from automator.config import Settings
from automator.coupons import generate_code
from automator.durations import format_duration
from automator.errors import AutomatorError
from automator.model import CouponSpec, EventTrigger, Rule, Variant
from automator.policies import planned_send_at
from automator.rendering import Failed, Renderer, Rendering, RenderJob, RenderPool, Result
from automator.status import COUNTED, Status
from automator.store import coupons, journeys, queueing
from automator.store.candidates import Addressee, Candidate
from automator.store.journeys import step_occurrence
from automator.timestamps import shown_at

GENERATE_TRIES = 5


@dataclass
class Draft:
    """A message being queued: its row values, then its coupon and rendered bodies."""

    values: dict[str, Any]
    contact: Any
    id: int | None = None
    properties: dict[str, Any] | str | None = None  # the triggering event's, for event rules
    sending: Variant | None = None  # what it sends: its step's, its variant's
    coupon: Any = None
    text: bytes | str = b""  # as stored (see rendering.StoredContent)
    html: bytes | str = b""
    outcome: str = "queued"
    reason: str = "queued"


@dataclass(frozen=True)
class NewCoupon:
    """A generated code not stored yet (it is stored once its message has an id)."""

    code: str
    percent_off: int | None
    expires_at: datetime


@dataclass
class Prepared:
    """A chunk read, its coupons chosen and its rendering started; nothing written yet."""

    drafts: list[Draft]
    rendered: list[Draft]  # the drafts being rendered, in the order of the rendering's results
    rendering: Rendering


def enqueue_chunk(
    pool: RenderPool, settings: Settings, session: Session, rule: Rule, chunk: list[Candidate], now: datetime
) -> list[str]:
    """Queue a chunk of occurrences in the session's transaction; returns one outcome per
    message actually inserted."""
    return finish(session, rule, prepare(pool, settings, session, rule, chunk, now), now)


def can_overlap(rule: Rule) -> bool:
    """Whether a chunk of this rule may be prepared while the one before is still being
    written. Not when it takes pool codes: those are chosen in the transaction that gives
    them (FOR UPDATE SKIP LOCKED on PostgreSQL). Nor with a `limit`: a chunk counts the
    messages the chunks before it wrote."""
    pooled = any(spec.pool for step in rule.journey for spec in step.send.coupons)
    return not pooled and rule.limit is None


def prepare(
    pool: RenderPool, settings: Settings, session: Session, rule: Rule, chunk: list[Candidate], now: datetime
) -> Prepared:
    """Choose the chunk's coupons and start rendering it (on the render workers when it is
    big enough, so that the caller can write the chunk before meanwhile). The candidates
    carry what the messages need of their contacts and events: nothing is read again."""
    drafting = Drafting(settings, rule, now)
    drafts = _unique([drafting.draft(candidate) for candidate in chunk])
    if rule.limit is not None:
        _apply_limit(session, rule, drafts, now)
    sendable = [draft for draft in drafts if draft.values["status"] == "queued"]
    for spec, drafts_of_spec in _by_coupon(sendable).items():
        _choose_coupons(session, spec, drafts_of_spec, now)
    rendered = [draft for draft in sendable if draft.values["status"] == "queued"]
    jobs = _jobs(pool.renderer, rule, rendered)
    return Prepared(drafts, rendered, pool.start(jobs))


def finish(session: Session, rule: Rule, prepared: Prepared, now: datetime) -> list[str]:
    """Write a prepared chunk: the messages, their content, their coupons, their history."""
    _apply(prepared.rendered, prepared.rendering.results())
    drafts = prepared.drafts
    ids = queueing.insert_messages(session, [draft.values for draft in drafts])
    inserted = []
    for draft in drafts:
        draft.id = ids.get((draft.values["contact_id"], draft.values["occurrence"]))
        if draft.id is not None:
            inserted.append(draft)
    queueing.insert_contents(session, [(d.id or 0, d.text, d.html) for d in inserted if d.text or d.html])
    for spec, drafts_of_spec in _by_coupon(inserted).items():
        _give_coupons(session, rule, spec, drafts_of_spec, now)
    queueing.record_history(session, [(d.id or 0, d.values["status"], d.reason) for d in inserted], now)
    return [draft.outcome for draft in inserted]


class Drafting:
    """Drafts a chunk's messages; what every message of the chunk shares is worked out once.

    Most of a chunk is due by now and so planned for now, moved to the end of the quiet
    hours in the contact's time zone: a send time is worked out once per time zone and
    due time, not once per message."""

    def __init__(self, settings: Settings, rule: Rule, now: datetime) -> None:
        self.settings = settings
        self.rule = rule
        self.now = now
        self.offset = rule.offset
        self.lateness = rule.lateness
        self.priority = priority(settings, rule)
        self._send_at: dict[tuple[str | None, datetime], datetime] = {}

    def draft(self, candidate: Candidate) -> Draft:
        contact = candidate.contact
        due = candidate.due_at or candidate.occurred_at + self.offset
        send_at = self.send_at(contact, max(due, self.now))
        send = self.rule.step(candidate.step).send
        variant = send.choose(self.rule.id, contact.id)
        values = {
            "rule_id": self.rule.id,
            "contact_id": contact.id,
            "email": contact.email,
            "occurrence": step_occurrence(candidate.occurrence, candidate.step),
            "occurred_at": candidate.occurred_at,
            "event_id": candidate.event_id,
            "step": candidate.step,
            "variant": variant,
            "status": "suppressed" if candidate.suppressed else "queued",
            "hold_kind": None,
            "priority": self.priority,
            "due_at": due,
            "send_at": send_at,
            "expires_at": send_at + self.lateness,
            "locale": contact.locale or "en",
            "subject": "",
            "message_id": emails.new_message_id(self.settings.sender),
            "created_at": self.now,
            "skip_policies": False,
            "attempts": 0,
            "sent_at": None,
        }
        draft = Draft(values, contact, properties=candidate.properties, sending=send.variant(variant))
        if candidate.suppressed:
            draft.outcome, draft.reason = "suppressed", "address is suppressed"
        elif candidate.skip is not None:
            skip(draft, "skipped: when", candidate.skip, self.now)
        elif send_at > self.now:
            draft.reason = f"queued; waits until {send_at.isoformat()} (quiet hours)"
        return draft

    def send_at(self, contact: Addressee, at: datetime) -> datetime:
        key = (contact.timezone, at)
        send_at = self._send_at.get(key)
        if send_at is None:
            send_at = self._send_at[key] = planned_send_at(self.settings, contact, at)
        return send_at


def skip(draft: Draft, outcome: str, reason: str, now: datetime, goes_on: bool = True) -> None:
    """Record the draft as skipped by the rule's own terms: never rendered nor sent. A step
    whose `when` does not hold is "gone" now, so that the journey's next step counts its
    delay from here; a journey the `limit` does not let start (`goes_on` false) has no
    time it went, and no later step follows it."""
    draft.values["status"], draft.values["sent_at"] = Status.SKIPPED.value, now if goes_on else None
    draft.outcome, draft.reason = outcome, reason


def _apply_limit(session: Session, rule: Rule, drafts: list[Draft], now: datetime) -> None:
    """Skip the journeys this chunk would start over the rule's `limit`: counted against the
    journeys its contacts started already (one query per chunk; the chunks before were
    written in this transaction, see `can_overlap`) and the chunk's own, in due order."""
    limit = rule.limit
    assert limit is not None
    starting = [d for d in drafts if d.values["step"] == 1 and d.values["status"] in COUNTED]
    if not starting:
        return
    since = min(d.values["due_at"] for d in starting) - limit.per
    contacts = {d.values["contact_id"] for d in starting}
    started = journeys.started(session, rule.id, contacts, since, COUNTED)
    for draft in sorted(starting, key=lambda d: d.values["due_at"]):
        due = draft.values["due_at"]
        before = journeys.in_span(started.get(draft.values["contact_id"], []), due, limit.per)
        if len(before) >= limit.max:
            per, last = format_duration(limit.per), shown_at(max(before))
            why = f"limit: at most {limit.max} per {per}; last on {last}"
            skip(draft, "skipped: limit", why, now, goes_on=False)
        else:
            started.setdefault(draft.values["contact_id"], []).append(due)


def _by_coupon(drafts: list[Draft]) -> dict[CouponSpec, list[Draft]]:
    """Drafts grouped by the coupon their step or variant takes; those without one left out."""
    groups: dict[CouponSpec, list[Draft]] = {}
    for draft in drafts:
        spec = draft.sending.coupon if draft.sending is not None else None
        if spec is not None:
            groups.setdefault(spec, []).append(draft)
    return groups


def _unique(drafts: list[Draft]) -> list[Draft]:
    """Two events of one order in the same chunk: one message."""
    unique: dict[tuple[int, str], Draft] = {}
    for draft in drafts:
        unique.setdefault((draft.values["contact_id"], draft.values["occurrence"]), draft)
    return list(unique.values())


def _choose_coupons(session: Session, spec: CouponSpec, drafts: list[Draft], now: datetime) -> None:
    """Pick each draft's code before rendering: a free pool code, else (when the rule says
    so) a fresh one; with an empty pool and `when_empty: hold` the draft is held."""
    waiting = drafts
    if spec.pool:
        for draft, row in zip(drafts, coupons.free_codes(session, spec.pool, len(drafts)), strict=False):
            draft.coupon = row
        waiting = [draft for draft in drafts if draft.coupon is None]
        if spec.when_empty == "hold":
            for draft in waiting:
                _hold_for_coupon(draft, spec.pool)
            return
    for draft, code in zip(waiting, _fresh_codes(session, spec.prefix, len(waiting)), strict=True):
        draft.coupon = NewCoupon(code, spec.percent_off, now + spec.expires_in)


def _hold_for_coupon(draft: Draft, pool: str) -> None:
    draft.values["status"], draft.values["hold_kind"] = "held", "coupon"
    draft.outcome, draft.reason = "held: coupon pool empty", f"coupon pool '{pool}' is empty"


def _fresh_codes(session: Session, prefix: str, count: int) -> list[str]:
    """`count` new codes that no coupon in the store has; one drawn twice is drawn again."""
    codes: set[str] = set()
    for _ in range(GENERATE_TRIES):
        codes |= {generate_code(prefix) for _ in range(count - len(codes))}
        codes -= coupons.existing_codes(session, codes)
        if len(codes) == count:
            return list(codes)
    raise AutomatorError(f"could not generate unique coupon codes in {GENERATE_TRIES} tries")


def _give_coupons(session: Session, rule: Rule, spec: CouponSpec, drafts: list[Draft], now: datetime) -> None:
    """Store the chosen codes against the inserted messages."""
    generated, owners = [], {}
    for draft in drafts:
        coupon = draft.coupon
        if isinstance(coupon, NewCoupon):
            generated.append(
                {
                    "code": coupon.code,
                    "percent_off": coupon.percent_off,
                    "expires_at": coupon.expires_at,
                    "contact_id": draft.values["contact_id"],
                    "rule_id": rule.id,
                    "message_id": draft.id,
                    "created_at": now,
                    "assigned_at": now,
                }
            )
        elif coupon is not None:
            owners[coupon.id] = (draft.id or 0, draft.values["contact_id"])
    if len(coupons.assign(session, owners, rule.id, now)) < len(owners):
        # A code was taken since it was chosen (another daemon): the chunk is redone one by one.
        raise AutomatorError(f"a code of pool '{spec.pool}' was taken meanwhile")
    coupons.add_generated(session, generated)


def attach_coupons(
    session: Session, rule: Rule, spec: CouponSpec, drafts: list[Draft], now: datetime
) -> None:
    """Choose and store coupons for messages that exist already (released from a hold)."""
    _choose_coupons(session, spec, drafts, now)
    _give_coupons(session, rule, spec, [draft for draft in drafts if draft.coupon is not None], now)


def priority(settings: Settings, rule: Rule) -> int:
    """A rule's priority: its own, unless automator.toml sets another."""
    return settings.priorities.get(rule.id, rule.priority)


def _jobs(renderer: Renderer, rule: Rule, drafts: list[Draft]) -> list[RenderJob]:
    is_event = isinstance(rule.trigger, EventTrigger)
    return [
        renderer.job(
            rule,
            draft.contact,
            draft.coupon,
            draft.values["occurred_at"],
            draft.values["send_at"],
            (draft.properties or {}) if is_event else None,
            draft.sending,
        )
        for draft in drafts
    ]


def _apply(drafts: list[Draft], results: list[Result]) -> None:
    """Each draft's content; a template error holds only the message it happened in."""
    for draft, result in zip(drafts, results, strict=True):
        if isinstance(result, Failed):
            draft.values["status"], draft.values["hold_kind"] = "held", "render"
            draft.outcome, draft.reason = "held: template error", result.reason
        else:
            draft.values["subject"], draft.text, draft.html = result.subject, result.text, result.html
