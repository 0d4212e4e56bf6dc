"""Build the RFC 5322 email for a queued message, and sign unsubscribe links."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from urllib.parse import quote


class _Policy(EmailPolicy):
    """SMTP policy that folds URL-list headers between their entries instead of RFC 2047-
    encoding a long URL, which would break List-Unsubscribe in every mail client."""

    URL_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post", "message-id"})

    def fold(self, name: str, value: str) -> str:
        if name.lower() in self.URL_HEADERS:
            return f"{name}: " + str(value).replace(", <", f",{self.linesep} <") + self.linesep
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in self.URL_HEADERS:
            return self.fold(name, value).encode("ascii")
        return super().fold_binary(name, value)


POLICY = _Policy(linesep="\r\n")  # what email.policy.SMTP is, plus the folding above


def new_message_id(sender: str) -> str:
    """A Message-ID fixed when the message is queued, so a resend carries the same one."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "automator.local"
    return make_msgid(idstring="automator", domain=domain)


def unsubscribe_token(secret: str, email: str) -> str:
    """An HMAC over the address: only automator can make one, so a forged link is refused."""
    return hmac.new(secret.encode(), email.lower().encode(), hashlib.sha256).hexdigest()[:32]


def token_is_valid(secret: str, email: str, token: str) -> bool:
    return hmac.compare_digest(unsubscribe_token(secret, email).encode(), token.encode("utf-8", "replace"))


def unsubscribe_url(base_url: str, secret: str, email: str) -> str:
    token = unsubscribe_token(secret, email)
    return f"{base_url.rstrip('/')}/unsubscribe?email={quote(email)}&token={token}"


def build_email(
    *,
    sender: str,
    to: str,
    to_name: str | None,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    rule_id: str,
    date: datetime,
    list_unsubscribe_url: str,
) -> EmailMessage:
    """A multipart/alternative email; non-ASCII headers are RFC 2047-encoded by the policy."""
    email = EmailMessage(policy=POLICY)
    email["From"] = sender
    email["To"] = formataddr((to_name, to)) if to_name else to
    email["Subject"] = subject
    email["Date"] = format_datetime(date)
    email["Message-ID"] = message_id
    email["X-Automator-Rule"] = rule_id
    mailto = f"mailto:{parseaddr(sender)[1]}?subject=unsubscribe"
    email["List-Unsubscribe"] = f"<{list_unsubscribe_url}>, <{mailto}>"
    email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    email.set_content(text)
    email.add_alternative(html, subtype="html")
    return email
