"""The SMTP transport: sends each email through a relay over a small pool of kept-open connections.

Failures are sorted for the dispatcher (`smtp_errors`): temporary (retry later) or permanent.
The relay and how to use it are `SmtpSettings` (`smtp_settings`).

The password never crosses the network in cleartext: an `smtp://` session is upgraded with
STARTTLS whenever the server offers it, and AUTH on a session that stayed plaintext is refused
(`SmtpInsecureError`, temporary so that no message is lost while the set-up is fixed) unless
the URL allows it with `insecure_auth=1`, which only a loopback host may. Certificates are
verified unless the URL says `tls_verify=0`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any

import aiosmtplib

from automator.emails import OutgoingEmail
from automator.transports.base import OnResult, Transport
from automator.transports.smtp_errors import (
    SmtpInsecureError,
    SmtpPermanentError,
    connect_error,
    send_error,
)
from automator.transports.smtp_settings import SmtpSettings

log = logging.getLogger(__name__)


class RateLimit:
    """Spaces sends at least 1/per_second seconds apart; a rate of 0 never waits."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next_slot = 0.0  # event-loop time at which the next send may start

    async def wait(self) -> None:
        """Reserves the next free slot, then sleeps until it comes."""
        if not self._interval:
            return
        now = asyncio.get_running_loop().time()
        start = max(now, self._next_slot)
        self._next_slot = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)


class ConnectionPool:
    """At most `pool_size` open SMTP sessions, kept open between messages.

    Each slot holds a session or None (not connected yet, or discarded); a LIFO queue hands out
    the most recently used session first so a steady trickle of mail rides one connection.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._tls = _tls_context(settings)
        self._slots: asyncio.LifoQueue[aiosmtplib.SMTP | None] = asyncio.LifoQueue()
        for _ in range(settings.pool_size):
            self._slots.put_nowait(None)

    async def checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """A connected session, and whether it was reused (it may have died while idle)."""
        session = await self._slots.get()
        if session is not None and session.is_connected:
            return session, True
        try:
            return await self._connect(), False
        except BaseException:
            self._slots.put_nowait(None)
            raise

    def checkin(self, session: aiosmtplib.SMTP) -> None:
        """Returns a healthy session for the next message."""
        self._slots.put_nowait(session)

    def discard(self, session: aiosmtplib.SMTP) -> None:
        """Closes a session an error happened on; its slot will open a fresh one."""
        session.close()
        self._slots.put_nowait(None)

    async def close(self) -> None:
        """Waits for sessions in use to come back, then says QUIT on every open one."""
        sessions = [await self._slots.get() for _ in range(self._settings.pool_size)]
        for session in sessions:
            if session is not None:
                await _quit(session)
            self._slots.put_nowait(None)

    async def _connect(self) -> aiosmtplib.SMTP:
        """A session that is encrypted whenever the server allows it, and logged in if asked."""
        s = self._settings
        session = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.use_tls,
            start_tls=None,  # None: upgrade with STARTTLS whenever the server offers it
            tls_context=self._tls,
            timeout=s.timeout,
        )
        await session.connect()
        try:
            await _log_in(session, s)
        except BaseException:
            session.close()
            raise
        return session


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """The client side of TLS: the system's CAs plus `tls_ca`; no checks only with tls_verify=0."""
    context = ssl.create_default_context()
    if settings.tls_ca is not None:
        context.load_verify_locations(cafile=settings.tls_ca)
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _log_in(session: aiosmtplib.SMTP, settings: SmtpSettings) -> None:
    """Logs in when the settings have a user name, after checking the session is as safe as
    they demand; we check it here, not aiosmtplib, which would send the password in cleartext."""
    encrypted = session.get_transport_info("sslcontext") is not None
    if settings.start_tls and not encrypted:
        raise SmtpInsecureError(
            f"the SMTP server at {settings.masked_url} did not offer STARTTLS, which the URL requires"
            " (starttls=1); enable STARTTLS on the server, or use smtps:// if it speaks TLS on another port"
        )
    if settings.username is None:
        return
    if not encrypted and not settings.insecure_auth:
        raise SmtpInsecureError(
            f"the SMTP server at {settings.masked_url} did not offer STARTTLS; refusing to send the"
            " password in cleartext; use smtps:// or, on loopback only, ?insecure_auth=1"
        )
    await session.login(settings.username, settings.password or "")


async def _quit(session: aiosmtplib.SMTP) -> None:
    """Ends a session politely; a server that is already gone only needs the socket closed."""
    if not session.is_connected:
        return
    try:
        await session.quit()
    except (aiosmtplib.SMTPException, OSError) as exc:
        log.debug("QUIT failed, closing the socket instead: %s", exc)
        session.close()


class SmtpTransport(Transport):
    """Delivers through an SMTP relay with pooled sessions, a concurrency cap and a rate limit."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._where = f"SMTP server {settings.host}:{settings.port}"
        self._pool = ConnectionPool(settings)
        self._in_flight = asyncio.Semaphore(settings.concurrency)
        self._rate = RateLimit(settings.rate_limit)

    async def send(self, email: OutgoingEmail) -> None:
        """Sends one email; envelope sender and recipients come from its From/To/Cc/Bcc headers."""
        async with self._in_flight:
            await self._rate.wait()
            await self._deliver(email, retry_if_dropped=True)

    async def send_many(
        self, emails: Sequence[OutgoingEmail], on_result: OnResult | None = None
    ) -> list[BaseException | None]:
        """Sends a batch with one worker per usable connection, each taking the next email
        until none is left: no task per email, and the same caps and errors as `send`."""
        outcomes: list[BaseException | None] = [None] * len(emails)
        pending = enumerate(emails)  # shared: each email is taken by exactly one worker
        workers = min(self.settings.connections, len(emails))
        await asyncio.gather(*(self._work(pending, outcomes, on_result) for _ in range(workers)))
        return outcomes

    async def _work(
        self,
        pending: Iterator[tuple[int, OutgoingEmail]],
        outcomes: list[BaseException | None],
        on_result: OnResult | None,
    ) -> None:
        """One connection's share of a batch: the next email goes out once the one before
        the last is recorded (see `Transport.send_many`)."""
        recorded: Awaitable[None] | None = None
        for index, email in pending:
            try:
                await self.send(email)
            except Exception as exc:
                outcomes[index] = exc
            before, recorded = recorded, on_result(index, outcomes[index]) if on_result is not None else None
            if before is not None:
                await before

    async def close(self) -> None:
        """Waits for sends in flight, then quits every kept-open connection."""
        await self._pool.close()

    async def _deliver(self, email: OutgoingEmail, retry_if_dropped: bool) -> None:
        if not email.sender or not email.recipients:
            raise SmtpPermanentError("the email has no sender or no recipient")
        session, reused = await self._checkout()
        try:
            # The bytes go out as automator wrote them (aiosmtplib's send_message would re-flatten
            # them with the default policy and RFC 2047-encode List-Unsubscribe).
            refused = (await session.sendmail(email.sender, list(email.recipients), email.data))[0]
        except BaseException as exc:
            self._pool.discard(session)
            # Most likely a kept-open session the server hung up on while it sat idle. The server
            # never answered 250, so one try on a fresh session cannot deliver the message twice.
            if reused and retry_if_dropped and isinstance(exc, ConnectionError):
                return await self._deliver(email, retry_if_dropped=False)
            if isinstance(exc, (aiosmtplib.SMTPException, OSError, ValueError)):
                raise send_error(self._where, exc) from exc
            raise
        self._pool.checkin(session)
        _warn_partly_refused(email, refused)

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        try:
            return await self._pool.checkout()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise connect_error(self._where, exc) from exc


def _warn_partly_refused(email: OutgoingEmail, refused: dict[str, Any]) -> None:
    """The server took the message for some recipients only; resending would duplicate it."""
    for recipient, response in refused.items():
        log.warning(
            "message %s was not accepted for %s: %s %s",
            email.message_id,
            recipient,
            response.code,
            response.message,
        )
