"""Letter case for finding people by name: a name typed in any case finds the name stored in
any other, in every alphabet ("đức" finds "Đức", "ÉMILE" finds "Émile").

The database lowers a name for its index, but not always as Python does: SQLite's lower()
changes only A–Z, and PostgreSQL's follows the database's locale (only A–Z in "C"). So a
prefix is looked up in each of its spellings that such a lower() could leave
(`stored_spellings`), and what is found is checked exactly here (`starts_with`).
"""

from __future__ import annotations

from itertools import product

# Spellings looked up for one prefix at most: each letter beyond A–Z that has another case
# doubles them, so a prefix is cut after the letters that reach this; the rest of it is
# checked on what was found.
MOST_SPELLINGS = 8


def unicode_lower(text: str) -> str:
    """lower() for every alphabet (SQLite's changes only A–Z): "Đức" → "đức"."""
    return text.lower()


def starts_with(name: str | None, prefix: str) -> bool:
    """Whether `name`, in lower case, starts with `prefix` (in lower case already)."""
    return name is not None and unicode_lower(name).startswith(prefix)


def stored_spellings(prefix: str) -> tuple[list[str], bool]:
    """The spellings of a lower-case `prefix` that a database's lower() may leave of the names
    it starts (A–Z lowered, other letters in either case), and whether the prefix was cut
    short to keep them to MOST_SPELLINGS (then what is found needs `starts_with`)."""
    choices: list[list[str]] = []
    count = 1
    for letter in prefix:
        cases = _cases(letter)
        if count * len(cases) > MOST_SPELLINGS:
            return ["".join(spelling) for spelling in product(*choices)], True
        choices.append(cases)
        count *= len(cases)
    return ["".join(spelling) for spelling in product(*choices)], False


def _cases(letter: str) -> list[str]:
    """`letter` (lower case) and the other single letters that lower to it, beyond A–Z."""
    if letter.isascii():
        return [letter]
    others = {form for form in (letter.upper(), letter.title()) if len(form) == 1 and form.lower() == letter}
    return [letter, *sorted(others - {letter})]
