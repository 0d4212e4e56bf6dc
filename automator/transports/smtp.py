"""The SMTP transport: sends each email through a relay over a small pool of kept-open connections.

Failures are sorted for the engine: a 4xx reply, a refused, dropped or timed-out connection is a
`TemporaryDeliveryError` (retry later); a 5xx for the sender, a recipient or the data is a
`PermanentDeliveryError`. Both carry the server's `code` and `reply`.

The password never crosses the network in cleartext: an `smtp://` session is upgraded with
STARTTLS whenever the server offers it, and AUTH on a session that stayed plaintext is refused
(`SmtpInsecureError`, temporary so that no message is lost while the set-up is fixed) unless
the URL allows it with `insecure_auth=1`, which only a loopback host may. Certificates are
verified unless the URL says `tls_verify=0`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import aiosmtplib

from automator.emails import OutgoingEmail
from automator.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from automator.transports.base import OnResult, Transport

log = logging.getLogger(__name__)

URL_SETTING = "AUTOMATOR_SMTP_URL"
_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to reach the SMTP relay, and how hard to push it."""

    host: str
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False  # smtps://: TLS from the first byte
    start_tls: bool = False  # require STARTTLS; without it STARTTLS is still used whenever offered
    insecure_auth: bool = False  # allow AUTH without TLS (loopback hosts only)
    tls_verify: bool = True
    tls_ca: str | None = None  # a PEM file of CA certificates trusted besides the system's
    timeout: float = 30.0
    pool_size: int = 4
    concurrency: int = 8
    rate_limit: float = 0.0

    def __post_init__(self) -> None:
        problem = _settings_problem(self)
        if problem:
            raise ConfigError(f"invalid SMTP settings: {problem}")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> SmtpSettings:
        """Parses `smtp[s]://user:pass@host:port?starttls=1&timeout=10`, then applies overrides."""
        try:
            return cls(**{**_url_fields(url), **overrides})
        except ConfigError as exc:
            raise ConfigError(f"{URL_SETTING}: {exc}") from exc

    @property
    def masked_url(self) -> str:
        """The relay's URL with the password shown as `***`, fit for errors and logs."""
        scheme = "smtps" if self.use_tls else "smtp"
        user = quote(self.username, safe="") if self.username is not None else ""
        secret = ":***" if self.password else ""
        login = f"{user}{secret}@" if self.username is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{login}{host}:{self.port}"


def _settings_problem(settings: SmtpSettings) -> str | None:
    """Names the first value that cannot work, or None when all are usable."""
    if not settings.host:
        return "no host given"
    return _tls_problem(settings) or _capacity_problem(settings)


def _tls_problem(settings: SmtpSettings) -> str | None:
    """Names the first TLS or AUTH option that cannot work together with the others."""
    if settings.use_tls and settings.start_tls:
        return "implicit TLS (smtps) and STARTTLS cannot both be on"
    if settings.insecure_auth and not _is_loopback(settings.host):
        return (
            f"insecure_auth=1 would send the password in cleartext to {settings.host}, and is allowed"
            " only for a loopback host (127.0.0.1, ::1, localhost); use smtps:// or a server that"
            " offers STARTTLS instead"
        )
    if settings.tls_ca is not None and not settings.tls_verify:
        return "tls_ca has no effect with tls_verify=0; give one of them, not both"
    if settings.tls_ca is not None:
        return _ca_file_problem(settings.tls_ca)
    return None


def _ca_file_problem(path: str) -> str | None:
    """Why `path` cannot serve as a PEM file of CA certificates, or None when it can."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except FileNotFoundError:
        return f"tls_ca={path}: no such file"
    except OSError as exc:  # ssl.SSLError is one: the file holds no PEM certificate
        return f"tls_ca={path}: not a readable PEM file of CA certificates ({exc})"
    return None


def _is_loopback(host: str) -> bool:
    """Whether `host` names this machine: localhost, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _capacity_problem(settings: SmtpSettings) -> str | None:
    """Names the first timeout, pool or rate value that cannot work."""
    if settings.timeout <= 0:
        return f"timeout must be above 0 seconds, not {settings.timeout}"
    if settings.pool_size < 1:
        return f"pool_size must be at least 1, not {settings.pool_size}"
    if settings.concurrency < 1:
        return f"concurrency must be at least 1, not {settings.concurrency}"
    if settings.rate_limit < 0:
        return f"rate_limit must be 0 (unlimited) or more, not {settings.rate_limit}"
    return None


def _url_fields(url: str) -> dict[str, Any]:
    """The SmtpSettings fields an SMTP URL spells out; raises ConfigError naming the fault."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise ConfigError(f"not a URL ({exc})") from exc
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"scheme must be smtp:// or smtps://, not {parts.scheme or 'missing'!r}")
    if not parts.hostname:
        raise ConfigError("no host given (expected smtp://host:port)")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigError(f"port is not a number from 0 to 65535 ({exc})") from exc
    return {
        "host": parts.hostname,
        "port": port,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "use_tls": parts.scheme == "smtps",
        **_query_fields(parts.query),
    }


def _query_fields(query: str) -> dict[str, Any]:
    """The options of an SMTP URL's query string, converted to their field types."""
    fields: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _URL_OPTIONS:
            raise ConfigError(f"unknown option {name!r} (known: {', '.join(_URL_OPTIONS)})")
        field_name, convert, expected = _URL_OPTIONS[name]
        try:
            fields[field_name] = convert(value)
        except ValueError as exc:
            raise ConfigError(f"option {name}={value!r} is not {expected}") from exc
    return fields


def _flag(value: str) -> bool:
    """Reads a URL flag such as `starttls=1` or `starttls=false`."""
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(value)


def _explicit_flag(value: str) -> bool:
    """Like `_flag`, but an empty value is an error: `tls_verify=` must not turn checks off."""
    if not value:
        raise ValueError(value)
    return _flag(value)


def _file_path(value: str) -> str:
    """A file path given in the URL; it must not be empty."""
    if not value:
        raise ValueError(value)
    return value


# URL query option -> (SmtpSettings field, converter, what the value must be)
_URL_OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "starttls": ("start_tls", _flag, "1 or 0"),
    "insecure_auth": ("insecure_auth", _flag, "1 or 0"),
    "tls_verify": ("tls_verify", _explicit_flag, "1 or 0"),
    "tls_ca": ("tls_ca", _file_path, "a path to a PEM file of CA certificates"),
    "timeout": ("timeout", float, "a number of seconds"),
    "pool_size": ("pool_size", int, "a whole number"),
    "concurrency": ("concurrency", int, "a whole number"),
    "rate_limit": ("rate_limit", float, "a number of messages per second"),
}


class SmtpDeliveryError(DeliveryError):
    """A delivery error that remembers the SMTP server's reply code and text, when there was one."""

    def __init__(self, message: str, code: int | None = None, reply: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reply = reply


class SmtpTemporaryError(SmtpDeliveryError, TemporaryDeliveryError):
    """The relay answered 4xx, or could not be reached, or went silent: try again later."""


class SmtpPermanentError(SmtpDeliveryError, PermanentDeliveryError):
    """The relay answered 5xx for the sender, a recipient or the message: retrying will not help."""


class SmtpInsecureError(SmtpTemporaryError):
    """The session stayed plaintext where the settings demand TLS (a password to send, or
    starttls=1). Temporary, so no message is lost while the server or the URL is fixed."""


def _from_reply(what: str, code: int, reply: str) -> SmtpDeliveryError:
    """Sorts a server reply by its class: 5xx is permanent, anything else is worth retrying."""
    kind = SmtpPermanentError if 500 <= code < 600 else SmtpTemporaryError
    return kind(f"{what}: {code} {reply}", code, reply)


def _from_refused_recipients(
    where: str, refusals: list[aiosmtplib.SMTPRecipientRefused]
) -> SmtpDeliveryError:
    """Every recipient was refused: permanent only if no refusal was temporary."""
    listed = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in refusals)
    temporary = [r for r in refusals if not 500 <= r.code < 600]
    first = (temporary or refusals)[0]
    kind = SmtpTemporaryError if temporary else SmtpPermanentError
    return kind(f"{where} refused the recipients ({listed})", first.code, first.message)


def _connect_error(where: str, exc: Exception) -> SmtpTemporaryError:
    """Any failure to open a usable session (refused, timeout, TLS, login, greeting) is temporary.

    It says nothing about the message, so giving the message up would be wrong.
    """
    code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None
    reply = exc.message if isinstance(exc, aiosmtplib.SMTPException) else str(exc)
    detail = f"{code} {reply}" if code is not None else reply
    return SmtpTemporaryError(f"cannot open a session with {where}: {detail}{_advice(exc)}", code, reply)


def _advice(exc: BaseException) -> str:
    """What to do when the failure, or one it was raised from, is a certificate that did not verify."""
    cause: BaseException | None = exc
    for _ in range(8):  # a chain of causes is short; the bound only guards against a cycle
        if cause is None:
            return ""
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                "; the server's certificate did not verify: add the CA that signed it with"
                " ?tls_ca=/path/to/ca.pem (or, for a test server only, turn checks off with ?tls_verify=0)"
            )
        cause = cause.__cause__ or cause.__context__
    return ""


def _send_error(where: str, exc: Exception) -> SmtpDeliveryError:
    """Classifies a failure while the message itself was being sent."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return _from_refused_recipients(where, exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPHeloError):
        return _connect_error(where, exc)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _not_the_address(_from_reply(f"{where} refused sender {exc.sender}", exc.code, exc.message))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _not_the_address(_from_reply(f"{where} refused the message", exc.code, exc.message))
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return SmtpTemporaryError(f"{where} timed out: {exc.message}", None, exc.message)
    if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, OSError)):
        return SmtpTemporaryError(f"{where} dropped the connection: {exc}", None, str(exc))
    # SMTPNotSupported (e.g. a non-ASCII address without SMTPUTF8) or ValueError (no From/To,
    # an address that cannot go on a command line): this message can never be sent as it is.
    return _not_the_address(SmtpPermanentError(f"{where} cannot take this message: {exc}", None, str(exc)))


def _not_the_address(error: SmtpDeliveryError) -> SmtpDeliveryError:
    """A permanent refusal of the message or the sender says nothing about the recipient."""
    if isinstance(error, PermanentDeliveryError):
        error.address_rejected = False
    return error


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
        workers = min(self.settings.concurrency, self.settings.pool_size, len(emails))
        await asyncio.gather(*(self._work(pending, outcomes, on_result) for _ in range(workers)))
        return outcomes

    async def _work(
        self,
        pending: Iterator[tuple[int, OutgoingEmail]],
        outcomes: list[BaseException | None],
        on_result: OnResult | None,
    ) -> None:
        for index, email in pending:
            try:
                await self.send(email)
            except Exception as exc:
                outcomes[index] = exc
            if on_result is not None:
                on_result(index, outcomes[index])

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
                raise _send_error(self._where, exc) from exc
            raise
        self._pool.checkin(session)
        _warn_partly_refused(email, refused)

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        try:
            return await self._pool.checkout()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _connect_error(self._where, exc) from exc


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
