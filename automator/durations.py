"""Durations as marketers write them: `30m`, `1h`, `3d`, `2w`, `1d12h`."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"^(?:\d+[smhdw])+$")
_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
# A hundred years: longer than any delay, window or cap a shop needs, and short enough that
# a time that far from now is still on the calendar (a longer one broke every tick).
MAX_DAYS = 36525


def parse_duration(text: object) -> timedelta:
    """Parse a duration; raise ValueError with a hint a marketer can act on."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, str):
        compact = text.strip().replace(" ", "")
        if _WHOLE.match(compact):
            seconds = sum(int(amount) * _SECONDS[unit] for amount, unit in _PART.findall(compact))
            if seconds > MAX_DAYS * 86400:
                raise ValueError(f'"{text}" is too long: at most {MAX_DAYS}d (a hundred years)')
            return timedelta(seconds=seconds)
    shown = f'"{text}"' if isinstance(text, str) else repr(text)
    raise ValueError(f"{shown} is not a duration (use 1h, 30m, 3d)")


def format_duration(value: timedelta) -> str:
    """The shortest marketer-style spelling of a duration (inverse of parse_duration)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    out = []
    for unit in "dhms":  # weeks are written as days: 14d, not 2w
        amount, seconds = divmod(seconds, _SECONDS[unit])
        if amount:
            out.append(f"{amount}{unit}")
    return "".join(out)
