"""Coupon codes: generated codes are random, readable and hard to guess."""

from __future__ import annotations

import secrets

# No 0/O, 1/I/L: codes are read off a screen and typed by customers.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def generate_code(prefix: str = "", length: int = 10) -> str:
    """A fresh code such as `THANKS-7KQ2M9XA4B`; ~49 bits of randomness at length 10."""
    body = ""
    while len(body) < length:  # one read of the OS's randomness per code, not per character
        body += "".join(
            ALPHABET[byte % len(ALPHABET)] for byte in secrets.token_bytes(length) if byte < _UNBIASED
        )
    body = body[:length]
    return f"{prefix}-{body}" if prefix else body


# Bytes below this many map evenly onto the alphabet (the rest are dropped, never folded).
_UNBIASED = 256 - 256 % len(ALPHABET)
