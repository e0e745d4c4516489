"""Errors raised by the outbox.

Each subclasses the builtin error that callers already catch, so code written
for Django's own mail functions keeps working.
"""

from django.core.mail import BadHeaderError


def one_line(exc: BaseException) -> str:
    """``exc`` as its class and message on one line, for logs and rows."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class OutboxError(Exception):
    """Base class of every outbox error."""


class InvalidMessage(OutboxError, ValueError):
    """An email that cannot be queued: no recipients, or a header with a newline."""


class InvalidHeader(InvalidMessage, BadHeaderError):
    """A header value with a line break, which could smuggle in more headers."""


class MessageBuildError(OutboxError, ValueError):
    """A stored row that cannot be turned back into an email.

    Retrying cannot help, so the dispatcher fails the row without opening SMTP.
    """

    def __init__(self, row_id: int, reason: str) -> None:
        super().__init__(f"row {row_id} cannot be built: {reason}")
        self.row_id = row_id
        self.reason = reason


class DeadlineExceeded(OutboxError, TimeoutError):
    """One send took longer than its hard wall-clock deadline."""

    def __init__(self, seconds: float, stage: str) -> None:
        super().__init__(f"send deadline of {seconds:g} s exceeded while {stage}")
        self.seconds = seconds
        self.stage = stage


class DeliveryUnconfirmed(OutboxError):
    """The server took the whole message but the reply to it never arrived.

    The message may have been delivered; it is retried with the same Message-ID.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"message handed over, no reply: {cause}")
        self.cause = cause


class HandoverBlocked(OutboxError):
    """A message held back just before the end of DATA, and not sent.

    Raised by a dispatcher that could not record an earlier outcome: sending
    on would leave more than one delivered message unrecorded.
    """


class LeaseExpired(HandoverBlocked):
    """A message held back because the claim on its row could run out.

    Another dispatcher may have reclaimed the row, so this one neither sends
    nor records it.
    """
