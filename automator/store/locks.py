"""Every PostgreSQL advisory lock automator takes, in one place, so that no two uses of them
share a key. (SQLite takes none: one writer at a time, and one daemon per file.)

- `SCHEMA`: held while the schema changes (`schema`): two processes starting on a new
  database do not both make it.
- `EVALUATION`: held by a process while it evaluates the rules (`Store.evaluating`): one
  tick at a time per database, whichever daemon or `automator tick` runs it.
- `SEQUENCE_FENCE`: shared by each insert into the tables whose ids a rule remembers, and
  tried exclusively by a tick before it reads their newest ids (`postgres`).
- `(CONTACTS, contact id)`: the two-key form, which PostgreSQL keeps apart from the one-key
  form: claims of the same contact's messages take turns (`claims.lock_contacts`).
- `owner(name)`: held by a dispatcher for as long as it claims and sends (`claims.owning`):
  a free one tells that its claims have no one left to record them.
"""

from __future__ import annotations

import hashlib

AUTOMATOR = 0x6175746F6D61746F  # "automato", the first of automator's one-key locks
SCHEMA = AUTOMATOR
EVALUATION = AUTOMATOR + 1
SEQUENCE_FENCE = AUTOMATOR + 2
CONTACTS = 0x61757463  # "autc", the first key of the two-key locks on contacts


def owner(name: str) -> int:
    """The key of the lock of the claims of `name` (64 bits of a hash of the name: one of the
    few keys above would be drawn once in billions of billions of names)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
