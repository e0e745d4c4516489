"""The outbox's public API: queue an email inside the caller's transaction."""

import logging

from django.core.mail import EmailMessage
from django.db import transaction

from outbox.emails import to_fields
from outbox.models import OutboxMessage, Priority

logger = logging.getLogger(__name__)


def enqueue(
    message: EmailMessage,
    *,
    priority: int = Priority.NORMAL,
    using: str | None = None,
) -> OutboxMessage:
    """Write ``message`` to the outbox and return its row.

    Call it inside the transaction that makes the mail true (the new user, the
    reset request): if that transaction rolls back, so does the row, and
    nothing is sent. Nothing here talks to a mail server.

    Due rows are sent in ``priority`` order (``Priority.ACCOUNT`` first).
    Raise ``outbox.exceptions.InvalidMessage`` (a ValueError) for a message
    that has no recipients or a header with a line break.
    """
    row = OutboxMessage(**to_fields(message), priority=priority)
    row.save(using=using, force_insert=True)
    logger.info("outbox.enqueued row=%s in_transaction=%s", row.pk, _in_atomic(using))
    return row


def _in_atomic(using: str | None) -> bool:
    return bool(transaction.get_connection(using).in_atomic_block)
