"""The items of a JSON array in a file, as text, read a chunk at a time: an export's array
of records spans many lines, and is never read whole."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from automator.errors import AutomatorError

_NOT_SPACE = re.compile(r"[^ \t\r\n]")  # JSON's white space is these four
_CHUNK = 1 << 20  # characters read at a time


class ArrayItems:
    """(line, text) of each item of the JSON array in a file, read a chunk at a time: an item
    longer than a chunk is read on until it is whole. Its items are decoded by the caller;
    the array's own text (brackets, commas) is checked here, and an AutomatorError names
    the line and column where it stops being a JSON array."""

    def __init__(self, path: Path, handle: TextIO) -> None:
        self._path = path
        self._handle = handle
        self._text = ""  # read and not yet passed, from `_at` on
        self._at = 0
        self._line, self._column = 1, 1  # of `_at`
        self._decoder = json.JSONDecoder()

    def __iter__(self) -> Iterator[tuple[int, str]]:
        self._expect("[", "a JSON array starts with [")
        if self._next() == "]":
            self._pass(self._at + 1)
        else:
            while True:
                yield self._item()
                if self._expect(",]", "expected , or ] after an item of the array") == "]":
                    break
                if self._next() == "]":
                    raise self._broken("a comma before the array's ]: an item is missing")
        if self._next():
            raise self._broken("more text after the array's ]: a .json file holds one array")

    def _item(self) -> tuple[int, str]:
        self._next()
        while True:
            try:
                _, end = self._decoder.raw_decode(self._text, self._at)
            except json.JSONDecodeError as exc:
                if self._more():
                    continue
                self._pass(exc.pos)
                raise self._broken(f"not valid JSON: {exc.msg}") from None
            if end < len(self._text) or not self._more():  # a number may go on in the next chunk
                break
        line, text = self._line, self._text[self._at : end]
        self._pass(end)
        return line, text

    def _expect(self, allowed: str, problem: str) -> str:
        found = self._next()
        if not found:
            raise self._broken("the file ends before the array's ]: is it cut short?")
        if found not in allowed:
            raise self._broken(problem)
        self._pass(self._at + 1)
        return found

    def _next(self) -> str:
        """The next character that is not white space, not passed ('' at the file's end)."""
        while True:
            if found := _NOT_SPACE.search(self._text, self._at):
                self._pass(found.start())
                return found.group()
            self._pass(len(self._text))
            if not self._more():
                return ""

    def _more(self) -> bool:
        """Read on, as much again as is held (so that a long item is decoded a few times at
        most); False at the file's end."""
        chunk = self._handle.read(max(_CHUNK, len(self._text) - self._at))
        if not chunk:
            return False
        self._text, self._at = self._text[self._at :] + chunk, 0
        return True

    def _pass(self, end: int) -> None:
        """Move on to `end`, counting lines and columns."""
        passed = self._text[self._at : end]
        if (lines := passed.count("\n")) > 0:
            self._line += lines
            self._column = len(passed) - passed.rindex("\n")
        else:
            self._column += len(passed)
        self._at = end

    def _broken(self, problem: str) -> AutomatorError:
        where = f"{self._path}:{self._line}:{self._column}"
        return AutomatorError(f"{where}: {problem}; nothing was imported from the file")
