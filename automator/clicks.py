"""Click tracking (`track_clicks = true`): each http(s) link in a message's HTML part becomes
`<base_url>/c/<token>`, a redirect that `run --listen` serves and counts.

The token carries the message's id and the original URL, signed with the project secret:
only automator can make one, so the redirect can never be pointed at another site (no open
redirect) nor count a click for another message. The unsubscribe link and `mailto:` links
are left as they are. Opens are not tracked: see docs/results.md.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Iterable
from html import escape, unescape
from urllib.parse import urlsplit

# An <a> tag's href, in double or single quotes.
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)


def signature(secret: str, message_id: int, url: str) -> str:
    """An HMAC over the message id and the URL, apart from the unsubscribe tokens' (a prefix)."""
    return hmac.digest(secret.encode(), f"click\n{message_id}\n{url}".encode(), "sha256").hex()[:32]


def token(secret: str, message_id: int, url: str) -> str:
    encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    return f"{message_id}.{encoded}.{signature(secret, message_id, url)}"


def read_token(secrets: Iterable[str], value: str) -> tuple[int, str] | None:
    """The message id and URL a token signs, when one of `secrets` signed it; else None."""
    parts = value.split(".")
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    message_id = int(parts[0])
    try:
        url = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        return None
    given = parts[2].encode("utf-8", "replace")
    if not any(hmac.compare_digest(signature(s, message_id, url).encode(), given) for s in secrets if s):
        return None
    return (message_id, url) if _trackable(url) else None


def tracked(html: str, message_id: int, base_url: str, secret: str) -> str:
    """The HTML with each http(s) link turned into its signed redirect; the unsubscribe link
    and other schemes (mailto:, tel:) stay as they are."""
    root = base_url.rstrip("/")

    def rewrite(found: re.Match[str]) -> str:
        url = unescape(found.group(3))
        if not _trackable(url) or url.startswith(f"{root}/unsubscribe"):
            return found.group(0)
        redirect = f"{root}/c/{token(secret, message_id, url)}"
        return f"{found.group(1)}{found.group(2)}{escape(redirect)}{found.group(2)}"

    return _HREF.sub(rewrite, html)


def _trackable(url: str) -> bool:
    parts = urlsplit(url.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
