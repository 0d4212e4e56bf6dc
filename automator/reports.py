"""What a tick did, per rule: the counts the CLI prints, the daemon logs and tests read."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class RuleReport:
    """What one tick did for one rule."""

    rule_id: str
    evaluated: int = 0
    enqueued: int = 0
    sent: int = 0
    waiting: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    waited: set[int] = field(default_factory=set)  # the messages a quiet-hours or cap wait moved
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "evaluated": self.evaluated,
            "enqueued": self.enqueued,
            "sent": self.sent,
            "waiting": self.waiting,
            "skipped": dict(self.outcomes),
            "error": self.error,
        }


@dataclass
class TickReport:
    now: datetime
    rules: dict[str, RuleReport] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def rule(self, rule_id: str) -> RuleReport:
        return self.rules.setdefault(rule_id, RuleReport(rule_id))
