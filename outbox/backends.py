"""An email backend that queues mail in the outbox instead of sending it.

With ``EMAIL_BACKEND = "outbox.backends.OutboxBackend"`` every ``send_mail()``
of the site, password resets and admin error reports included, becomes a row
in the caller's transaction; ``send_outbox`` delivers it later.
"""

from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction

from outbox.api import enqueue
from outbox.exceptions import InvalidMessage


class OutboxBackend(BaseEmailBackend):
    def __init__(
        self, fail_silently: bool = False, using: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.using = using

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue every message that has recipients; return how many were queued."""
        queued = 0
        # One savepoint for the lot: a list of messages is queued whole or not
        # at all, as one SMTP conversation would have sent it.
        with transaction.atomic(using=self.using):
            for message in email_messages:
                if not message.recipients():
                    continue
                try:
                    enqueue(message, using=self.using)
                except InvalidMessage:
                    if not self.fail_silently:
                        raise
                    continue
                queued += 1
        return queued
