"""Deliver due messages: re-check each one, respect quiet hours and the frequency cap, send,
and record every outcome in the message's history.

Each message is claimed (status `sending`, with a lease) in one transaction, sent, then
marked in another as soon as the server answers, so a crash between the two leaves a claim
that is put back in the queue (its lease expires; sooner when the dispatcher is known to be
gone) and the message is sent again with the same Message-ID (at-least-once, never silently
lost). Only the emails open in the transport at the crash can arrive twice.

The parts, each on its own: `claims` (a batch read, re-checked and taken under a lease),
`rechecks` (the pure decisions: suppressed, too late, cancelled, quiet hours, the cap),
`rerender` (content that shows the send time follows a wait), `outcomes` (sent, retried,
failed; the rule's `then`), and `dispatcher`, which runs them in turn while the transport
sends. The email a message becomes is `automator.letters`, which the render workers and the
console use too. Each works on a batch at a time: a claim's reads, verdicts and state
changes are a few statements whatever its size.
"""

from automator.dispatch.claims import LEASE
from automator.dispatch.dispatcher import BATCH, Dispatcher

__all__ = ["BATCH", "LEASE", "Dispatcher"]
