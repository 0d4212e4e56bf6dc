"""SMTP failures sorted for the dispatcher: a 4xx reply, a refused, dropped or timed-out
connection is a `SmtpTemporaryError` (retry later); a 5xx for the sender, a recipient or the
data is a `SmtpPermanentError`. Both carry the server's `code` and `reply`."""

from __future__ import annotations

import ssl

import aiosmtplib

from automator.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError


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


def connect_error(where: str, exc: Exception) -> SmtpTemporaryError:
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


def send_error(where: str, exc: Exception) -> SmtpDeliveryError:
    """Classifies a failure while the message itself was being sent."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return _from_refused_recipients(where, exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPHeloError):
        return connect_error(where, exc)
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
