"""A message's statuses, why a message is held, and which changes between statuses are
allowed: the one table that the dispatcher, the CLI and the console all ask.

Every change of a message's status is a compare-and-set on the status it was read in
(`store.messages.change`): a dispatcher claiming a message and a person cancelling it at
the same moment cannot both win, and the loser is told what happened instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from automator.moments import shown_zone
from automator.timestamps import shown_at


class Status(StrEnum):
    QUEUED = "queued"  # waits for its send time
    HELD = "held"  # waits for a person (or a coupon, a template fix, an enabled rule)
    SENDING = "sending"  # claimed by a dispatcher under a lease
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"
    # Not sent, by the rule's own terms: over its `limit`, or a journey's step whose `when`
    # did not hold when it came due (the journey goes on to the next step).
    SKIPPED = "skipped"


OPEN = frozenset({Status.QUEUED, Status.HELD})  # not sent yet, and a person may still act on it
# The messages that count against a rule's `limit`: journeys started and not stopped.
COUNTED = (Status.QUEUED.value, Status.HELD.value, Status.SENDING.value, Status.SENT.value)


class HoldKind(StrEnum):
    """Why a message is held; support may lift only the holds support placed."""

    ADMIN = "manual"  # by an admin in the console, or an operator at the command line
    SUPPORT = "support"  # by a support user
    BULK = "bulk"  # by an admin's bulk action
    COUPON = "coupon"  # its coupon pool was empty when it was queued
    RENDER = "render"  # its template failed
    HEADER = "header"  # a header would carry a line break (a contact's name, a subject)
    RULE = "rule"  # its rule is disabled


# Why a message is held, in words that follow "held": "held by support".
HELD_WHY: dict[str, str] = {
    HoldKind.ADMIN: "by an admin",
    HoldKind.SUPPORT: "by support",
    HoldKind.BULK: "by an admin's bulk hold",
    HoldKind.COUPON: "until its coupon pool has a code",
    HoldKind.RENDER: "for a template error",
    HoldKind.HEADER: "for an unsafe header",
    HoldKind.RULE: "while its rule is disabled",
}

# Holds that Release completes (renders, takes a coupon) before the message goes back.
NEEDS_COMPLETING = frozenset({HoldKind.COUPON, HoldKind.RENDER})

# Every status a message may go to from each status. Final statuses go nowhere.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset(
        {Status.QUEUED, Status.HELD, Status.SENDING, Status.CANCELLED, Status.SUPPRESSED}
    ),
    Status.HELD: frozenset({Status.HELD, Status.QUEUED, Status.CANCELLED, Status.SUPPRESSED}),
    # Sent, failed for good, back to the queue (a retry, a lease that ran out, a stop),
    # or held (an email that must not be built: a line break in a header).
    Status.SENDING: frozenset({Status.SENT, Status.FAILED, Status.QUEUED, Status.HELD}),
    Status.SENT: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.SUPPRESSED: frozenset(),
    Status.SKIPPED: frozenset(),
}


def allowed(before: str, after: str) -> bool:
    return Status(after) in TRANSITIONS[Status(before)]


@dataclass(frozen=True)
class Action:
    """Something a person does to one message: from which statuses, to which."""

    name: str  # as the person says it: "hold", "send now"
    done: str  # "held", "sent now"
    applies_to: frozenset[Status]
    to: Status

    def applies(self, status: str) -> bool:
        return status in self.applies_to

    def refusal(self) -> str:
        """'only a queued or held message can be cancelled'."""
        statuses = " or ".join(status for status in Status if status in self.applies_to)
        return f"only a {statuses} message can be {self.done}"


HOLD = Action("hold", "held", frozenset({Status.QUEUED}), Status.HELD)
RELEASE = Action("release", "released", frozenset({Status.HELD}), Status.QUEUED)
CANCEL = Action("cancel", "cancelled", OPEN, Status.CANCELLED)
SEND_NOW = Action("send now", "sent now", OPEN, Status.QUEUED)


def what_happened(status: str, at: datetime | None) -> str:
    """A message's status as a person reads it in an answer: 'was sent at 2026-11-20 10:02 UTC',
    or in the zone the answer is shown in (`moments.shown_in`: the console's viewer's)."""
    zone = shown_zone()
    shown = shown_at(at, zone) if zone is not None else f"{at:%Y-%m-%d %H:%M} UTC"
    when = f" at {shown}" if at is not None else ""
    return {
        Status.QUEUED: "is queued",
        Status.HELD: f"was held{when}",
        Status.SENDING: f"started sending{when}",
        Status.SENT: f"was sent{when}",
        Status.FAILED: f"failed{when}",
        Status.CANCELLED: f"was cancelled{when}",
        Status.SUPPRESSED: f"was suppressed{when}",
        Status.SKIPPED: f"was skipped{when}",
    }[Status(status)]
