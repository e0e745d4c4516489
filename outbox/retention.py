"""Retention: delete finished rows, blank the bodies of sent ones.

Sent account mail holds personal data and live links; once delivered there
is no reason to keep its body. Pending and sending rows are never touched.
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from outbox.models import DispatcherRun, OutboxMessage, Status

logger = logging.getLogger(__name__)

FINISHED = [Status.SENT, Status.FAILED, Status.CANCELLED]


def purge(older_than: timedelta, batch_size: int = 1000) -> int:
    """Delete finished rows last changed before ``older_than`` ago, in batches."""
    cutoff = timezone.now() - older_than
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                OutboxMessage.objects.filter(
                    status__in=FINISHED, updated_at__lt=cutoff
                ).values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                break
            # The status filter again: a row an operator moved back to
            # pending since the select stays.
            OutboxMessage.objects.filter(id__in=ids, status__in=FINISHED).delete()
        deleted += len(ids)
    DispatcherRun.objects.filter(finished_at__lt=cutoff).delete()
    logger.info("outbox.purged rows=%s older_than_days=%s", deleted, older_than.days)
    return deleted


def blank_sent_bodies(older_than: timedelta, batch_size: int = 1000) -> int:
    """Empty the bodies of rows sent before ``older_than`` ago."""
    cutoff = timezone.now() - older_than
    blanked = 0
    while True:
        ids = list(
            OutboxMessage.objects.filter(status=Status.SENT, sent_at__lt=cutoff)
            .exclude(body="", alternatives=[], attachments=[])
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            break
        blanked += OutboxMessage.objects.filter(id__in=ids).update(
            body="", alternatives=[], attachments=[], updated_at=timezone.now()
        )
    logger.info("outbox.bodies_blanked rows=%s", blanked)
    return blanked
