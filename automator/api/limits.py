"""What one client may ask of the API: requests per key (a token bucket each, in memory)
and the size of a request's body.

The buckets live in the daemon's memory: several daemons behind one address each allow a
key its rate, and a restart fills every bucket. That is enough to keep one runaway client
from crowding out the others and the daemon's own work, which is what the limit is for.
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass

MAX_BODY = 5 * 1024 * 1024  # bytes: 1,000 events of 5 KB each


class BodyTooLarge(Exception):
    """The request's body passes MAX_BODY (said by its Content-Length, or counted)."""


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimit:
    """A token bucket per key: `burst` requests at once, refilled at `per_second`."""

    def __init__(self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def wait(self, key: str) -> int:
        """Take a token for `key`: 0 when there was one, else the whole seconds until there
        will be (the request is refused, and its Retry-After says when to come back)."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.per_second)
            bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0
            return max(1, math.ceil((1 - bucket.tokens) / self.per_second))


async def read_body(declared: str | None, chunks: AsyncIterable[bytes], limit: int = MAX_BODY) -> bytes:
    """The body, refused (BodyTooLarge) as soon as it is known to pass `limit`: at once when
    its Content-Length says so, else when the bytes counted pass it (a chunked body, or a
    client whose header lies), without holding more than the limit in memory."""
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def gunzipped(raw: bytes, limit: int = MAX_BODY) -> bytes:
    """A gzip body (`Content-Encoding: gzip`, as Segment's libraries may send) decompressed,
    refused (BodyTooLarge) as soon as it passes `limit`: a few kilobytes of gzip can hold
    gigabytes. ValueError for one that is not gzip, or is cut short."""
    body = bytearray()
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body += inflater.decompress(raw, limit + 1 - len(body))
        except zlib.error as exc:
            raise ValueError(f"it is not gzip: {exc}") from None
        if len(body) > limit:
            raise BodyTooLarge
        if not inflater.eof:
            raise ValueError("its gzip data ends before the end of what it compresses")
        raw = inflater.unused_data  # a further gzip member, as concatenated files make
        if not raw:
            return bytes(body)
