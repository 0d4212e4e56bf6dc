"""Message bodies as they are stored: compressed with LZ4.

An HTML email is mostly its layout's markup and inline styles, so a body packs to about a
third of its size, in microseconds. Queueing writes a third of the bytes (a message's
content fits in one database page instead of spilling into overflow pages), the render
workers send a third of the bytes back, and a store of a million messages is gigabytes
smaller. The LZ4 frame format is the standard one: `lz4 -d` reads a body exported from
the database.

A body is text until it is packed, and `bytes` once it is: the store takes bytes as packed
already.
"""

from __future__ import annotations

import lz4.frame


def pack(text: str) -> bytes:
    """The empty body stays empty (a message not rendered yet)."""
    return lz4.frame.compress(text.encode()) if text else b""


def unpack(value: bytes | str) -> str:
    """A stored body: packed, or text stored before bodies were packed (read as it is)."""
    if isinstance(value, str):
        return value
    return lz4.frame.decompress(value).decode() if value else ""
