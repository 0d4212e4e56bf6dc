"""The contacts an import has written so far, by id: whether a record's contact is one an
earlier record of the file wrote (it was merged into that one), whatever batch that was in.

A set of ids would grow by some 70 bytes a contact (a million contacts: 70 MB); this keeps a
bit per id, in pages of 65,536 ids made as ids in their range come (ids are given in order,
so a file's contacts fill few pages: a million contacts, 128 kB)."""

from __future__ import annotations

from collections.abc import Iterable

_PAGE_BITS = 16  # ids per page: 2 ** 16


class SeenIds:
    def __init__(self) -> None:
        self._pages: dict[int, bytearray] = {}

    def add_all(self, ids: Iterable[int]) -> int:
        """Mark `ids` as seen; returns how many of them were seen before."""
        before = 0
        for id_ in ids:
            page = self._pages.get(id_ >> _PAGE_BITS)
            if page is None:
                page = self._pages[id_ >> _PAGE_BITS] = bytearray(1 << (_PAGE_BITS - 3))
            offset = id_ & ((1 << _PAGE_BITS) - 1)
            bit = 1 << (offset & 7)
            if page[offset >> 3] & bit:
                before += 1
            else:
                page[offset >> 3] |= bit
        return before
