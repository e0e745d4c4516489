"""Claiming due rows, so that several dispatchers never send one row twice.

A claim is one short transaction, committed before any network I/O. On
PostgreSQL the candidate rows are locked with SKIP LOCKED, so concurrent
dispatchers take disjoint batches without waiting on each other. The update
repeats the due condition, which keeps SQLite (no row locks; its writers are
serialised) from handing one row to two claims.
"""

import logging
import os
import socket
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from outbox.limits import SendingLimits, budget, lock_for_budget
from outbox.models import OutboxMessage, Status
from outbox.reconnect import with_reconnect

logger = logging.getLogger(__name__)


def worker_name() -> str:
    """Name this process in claims, so an operator can tell dispatchers apart."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_batch(
    size: int,
    lease_seconds: float,
    worker: str | None = None,
    limits: SendingLimits | None = None,
) -> list[OutboxMessage]:
    """Claim up to ``size`` due rows and return them in the order to send.

    Rows whose lease expired (their dispatcher died) come first and count as
    reclaimed; then pending rows whose next attempt time has come, highest
    priority first, oldest due first within a priority. Sending ``limits``
    can shrink the batch, down to nothing.
    """
    now = timezone.now()
    token = uuid.uuid4()
    rows = OutboxMessage.objects

    with transaction.atomic():
        if limits is not None and limits.active:
            lock_for_budget()
            room = budget(limits, now).room
            if room is not None and room < size:
                size = room
            if size <= 0:
                logger.info("outbox.limit_reached")
                return []
        stale = list(
            rows.stale(now)
            .order_by("lease_expires_at", "id")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:size]
        )
        due: list[int] = []
        if len(stale) < size:
            due = list(
                rows.due(now)
                .order_by("priority", "next_attempt_at", "id")
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)[: size - len(stale)]
            )
        if not stale and not due:
            return []

        still_claimable = Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(
            status=Status.SENDING, lease_expires_at__lte=now
        )
        rows.filter(still_claimable, id__in=stale + due).update(
            status=Status.SENDING,
            claim_token=token,
            claimed_by=worker or worker_name(),
            claimed_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            updated_at=now,
            reclaims=F("reclaims")
            + Case(When(status=Status.SENDING, then=Value(1)), default=Value(0)),
        )

    # The claim is committed: a lost connection from here on must not lose
    # the rows (a retry of the whole claim would take others, leaving these
    # held until their lease ends), so reading them back is retried alone.
    claimed = with_reconnect(
        lambda: list(
            rows.claimed_by(token).order_by("priority", "next_attempt_at", "id")
        )
    )
    stale_ids = set(stale)
    for row in claimed:
        if row.id in stale_ids:
            logger.warning(
                "outbox.reclaimed row=%s reclaims=%s attempts=%s",
                row.id,
                row.reclaims,
                row.attempts,
            )
        else:
            logger.info("outbox.claimed row=%s attempt=%s", row.id, row.attempts + 1)
    return claimed


def release(rows: list[OutboxMessage]) -> int:
    """Give untried rows back to the queue as they were; return how many."""
    by_token: dict[uuid.UUID, list[int]] = {}
    for row in rows:
        if row.claim_token is not None:
            by_token.setdefault(row.claim_token, []).append(row.id)
    released = 0
    for token, ids in by_token.items():
        released += (
            OutboxMessage.objects.claimed_by(token)
            .filter(id__in=ids)
            .update(
                status=Status.PENDING,
                claim_token=None,
                lease_expires_at=None,
                updated_at=timezone.now(),
            )
        )
    return released
