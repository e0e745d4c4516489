"""Decide what an SMTP error means for the row and for the run.

SMTP reply codes say who is at fault: a 5xx to every recipient or to the end of
DATA is about this message and will not change; a 4xx there may pass. Some
answers are about the connection or the account, whatever the message: 421
(the server is going away), AUTH refusals, TLS errors, time-outs, and quota
answers such as 550 5.4.5, a 5 that means "try tomorrow". Those stop the run
so the rest of the queue is not burnt against a server that cannot take it.
"""

import enum
import re
import smtplib
import ssl
from dataclasses import dataclass

from outbox.exceptions import DeadlineExceeded, DeliveryUnconfirmed
from outbox.models import ErrorKind

AUTH_CODES = frozenset({530, 534, 535, 454})
# Enhanced status X.4.5 is "mail system congestion", which providers use for
# sending quotas: the account is over its limit, not the message wrong.
_QUOTA = re.compile(rb"^\s*[45]\.4\.5\b")


class Action(enum.Enum):
    RETRY = "retry"
    """Try this row again later; go on with the run."""
    FAIL = "fail"
    """Fail this row for good; go on with the run."""
    STOP = "stop"
    """Try this row again later and end the run: the fault is not the row's."""


@dataclass(frozen=True)
class Verdict:
    action: Action
    kind: ErrorKind
    code: int | None
    text: str


def classify(exc: BaseException) -> Verdict:
    """Return what ``exc``, raised while sending one row, means."""
    text = _describe(exc)
    if isinstance(exc, DeliveryUnconfirmed):
        return Verdict(Action.STOP, ErrorKind.UNCONFIRMED, None, text)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _recipients_refused(exc, text)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _response(exc, text)
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return Verdict(Action.STOP, ErrorKind.AUTH, None, text)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return Verdict(Action.STOP, ErrorKind.AUTH, None, text)
    if isinstance(exc, (OSError, smtplib.SMTPException, DeadlineExceeded)):
        return Verdict(Action.STOP, ErrorKind.CONNECTION, None, text)
    return Verdict(Action.STOP, ErrorKind.INTERNAL, None, text)


def _response(exc: smtplib.SMTPResponseException, text: str) -> Verdict:
    code, reply = exc.smtp_code, _as_bytes(exc.smtp_error)
    if not is_reply_code(code):
        # A line with no reply code: not an SMTP server, or a broken one.
        return Verdict(Action.STOP, ErrorKind.CONNECTION, None, text)
    run_fault = _run_fault(code, reply)
    if run_fault is not None:
        return Verdict(Action.STOP, run_fault, code, text)
    if isinstance(exc, smtplib.SMTPDataError):
        if 500 <= code < 600:
            return Verdict(Action.FAIL, ErrorKind.PERMANENT, code, text)
        return Verdict(Action.RETRY, ErrorKind.TEMPORARY, code, text)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        # The site sends as one address; a server that refuses it (say 553,
        # not allowed to send as this address) would refuse every row, so
        # this is for the operator to fix, not a reason to fail the queue.
        return Verdict(Action.STOP, ErrorKind.SENDER, code, text)
    # An odd answer to EHLO, STARTTLS or the greeting, or a line with no code
    # at all (not an SMTP server), is about the server, not this message.
    return Verdict(Action.STOP, ErrorKind.CONNECTION, code, text)


def _recipients_refused(exc: smtplib.SMTPRecipientsRefused, text: str) -> Verdict:
    answers = [(code, _as_bytes(reply)) for code, reply in exc.recipients.values()]
    codes = [code for code, _reply in answers]
    if not all(is_reply_code(code) for code in codes):
        return Verdict(Action.STOP, ErrorKind.CONNECTION, None, text)
    first = codes[0] if codes else None
    for code, reply in answers:
        run_fault = _run_fault(code, reply)
        if run_fault is not None:
            return Verdict(Action.STOP, run_fault, code, text)
    if codes and all(500 <= code < 600 for code in codes):
        return Verdict(Action.FAIL, ErrorKind.PERMANENT, first, text)
    temporary = next((c for c in codes if 400 <= c < 500), first)
    return Verdict(Action.RETRY, ErrorKind.TEMPORARY, temporary, text)


def _run_fault(code: int, reply: bytes) -> ErrorKind | None:
    if code == 421 or _QUOTA.match(reply):
        return ErrorKind.THROTTLED
    if code in AUTH_CODES:
        return ErrorKind.AUTH
    return None


def is_reply_code(code: object) -> bool:
    """Whether ``code`` is an SMTP reply code at all (smtplib says -1 for a
    line without one)."""
    return isinstance(code, int) and 200 <= code <= 599


def _as_bytes(reply: bytes | str) -> bytes:
    return reply if isinstance(reply, bytes) else str(reply).encode()


def _describe(exc: BaseException) -> str:
    """A one-line error text for the row: the class and what it said.

    Recipients refused carry the address in their map; only the codes and
    replies are kept, so the row's error holds no address.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        parts = [
            f"{code} {_as_bytes(reply).decode('utf-8', 'replace')}"
            for code, reply in exc.recipients.values()
        ]
        detail = "; ".join(parts)
    elif isinstance(exc, smtplib.SMTPResponseException):
        reply = _as_bytes(exc.smtp_error).decode("utf-8", "replace")
        detail = f"{exc.smtp_code} {reply}"
    else:
        detail = str(exc) or "no detail"
    return f"{type(exc).__name__}: {detail}".replace("\r", " ").replace("\n", " ")
