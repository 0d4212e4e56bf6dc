"""Text from the database or from a file made safe to show on a terminal, and URLs shown
without their password.

A name, an attribute, a rule id or a line of an import file may hold control characters:
ESC starts a terminal escape sequence (one can erase a line and paint a false
"Suppressed: yes" in its place) and CR moves back to the start of the line. The CLI shows
each such character as its Python escape (`\\x1b`, `\\r`) instead, so that what is printed
is what is stored. A backslash is left as it is: escaping it would double every backslash
of a Windows path in an error message, and a literal `\\x1b` typed into a name does nothing
to a terminal.
"""

from __future__ import annotations

import re

CONTROL = "\x00-\x1f\x7f-\x9f"  # C0, DEL and C1, as a regex character class body
# Characters a terminal may act on that are not C0 or C1: bidirectional overrides and
# isolates (they reorder the rest of the line) and the line and paragraph separators.
_REORDERING = "\u2028\u2029\u202a-\u202e\u2066-\u2069"
_IN_LINE = re.compile(f"[{CONTROL}{_REORDERING}]")
_IN_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_REORDERING}]")  # keeps tab and line feed
_JSON_RAW = re.compile(f"[\x7f-\x9f{_REORDERING}]")  # json.dumps escapes C0 itself
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape(characters: str) -> str:
    """Each character as its Python escape: `\\r`, `\\n`, `\\t`, `\\x1b`, `\\u202e`."""
    return "".join(_NAMED.get(char) or _code(char) for char in characters)


def _code(char: str) -> str:
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def has_control(text: str) -> bool:
    """Whether `text` holds a character a terminal acts on (C0, DEL, C1, or one that
    reorders the line), line breaks and tabs included."""
    return _IN_LINE.search(text) is not None


def printable(text: str) -> str:
    """One line of output with every control character shown as its escape."""
    return _IN_LINE.sub(lambda found: escape(found.group()), text)


def printable_text(text: str) -> str:
    """Several lines of output (a message body): line feeds and tabs are kept, a CR LF is
    read as a line feed, and every other control character is shown as its escape."""
    return _IN_TEXT.sub(lambda found: escape(found.group()), text.replace("\r\n", "\n"))


def printable_json(text: str) -> str:
    """JSON from `json.dumps(..., ensure_ascii=False)` with DEL, C1 and the reordering
    characters written as `\\u` escapes, which json.dumps leaves raw. Outside strings JSON
    holds only ASCII, so the result is the same JSON."""
    return _JSON_RAW.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


# `scheme://user:` (or `user:` without a scheme) up to the last @: the password of a URL
# that does not parse could hold @ or / itself, so as much as may be it is masked.
_USER_INFO = re.compile(r"^((?:[^:/@\s]*://)?[^:/@]*:)(?!//).*@", re.DOTALL)
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd)=)[^&#]*", re.IGNORECASE)


def hide_password(url: str) -> str:
    """`url` with its password shown as `***`, for error messages and logs.

    SQLAlchemy renders a URL it can read; one it cannot (a port that is not a number), or
    one whose password holds an unencoded @ (SQLAlchemy then reads the rest as the host),
    has what lies between `user:` and its last @ masked instead; a `password=` in the
    query is masked too. A URL without a password is returned as it is."""
    from sqlalchemy import make_url  # here: the CLI prints through this module before any database

    try:
        parsed = make_url(url)
    except Exception:  # SQLAlchemy raises several types for a URL it cannot read
        parsed = None
    if parsed is None or "@" in (parsed.host or ""):
        shown = _USER_INFO.sub(r"\g<1>***@", url)
    else:
        shown = url if parsed.password is None else parsed.render_as_string(hide_password=True)
    return _QUERY_PASSWORD.sub(r"\g<1>***", shown)  # libpq also takes one as ?password=…


def undecodable(exc: UnicodeDecodeError) -> tuple[int, int, str]:
    """Where a file's bytes stop being UTF-8, from the error of decoding them whole: its
    line and column (from 1) and what is wrong, "not UTF-8 text: byte 0xff"."""
    data = exc.object
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - data.rfind(b"\n", 0, exc.start)
    return line, column, f"not UTF-8 text: byte 0x{data[exc.start]:02x}"
