"""Sending limits shared by every dispatcher: per minute and per 24 hours.

Providers cap what an account may send (Gmail: about 500 recipients a day on
a free account) and answer 421 or 454 when a client sends too fast. The
budget is counted from the database, so several dispatchers share it: rows
sent in the window plus rows claimed right now. On PostgreSQL the count and
the claim run under one advisory lock, so two dispatchers cannot both spend
the last of the budget; SQLite serialises writers anyway.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection

from outbox import conf
from outbox.models import OutboxMessage, Status

# An arbitrary constant naming the lock; pg_advisory_xact_lock takes a bigint.
_LOCK_KEY = 0x0B0C5E17


@dataclass(frozen=True)
class SendingLimits:
    per_minute: int | None = None
    per_day: int | None = None

    @classmethod
    def from_settings(cls) -> "SendingLimits":
        return cls(
            per_minute=conf.get("OUTBOX_RATE_LIMIT") or None,
            per_day=conf.get("OUTBOX_DAILY_LIMIT") or None,
        )

    @property
    def active(self) -> bool:
        return bool(self.per_minute or self.per_day)


@dataclass(frozen=True)
class Budget:
    used_minute: int
    used_day: int
    room: int | None
    """How many more may be claimed now; None when nothing limits it."""


def budget(limits: SendingLimits, now: datetime) -> Budget:
    rows = OutboxMessage.objects
    in_flight = rows.filter(status=Status.SENDING).count()
    sent = rows.filter(status=Status.SENT)
    used_minute = sent.filter(sent_at__gt=now - timedelta(minutes=1)).count()
    used_day = sent.filter(sent_at__gt=now - timedelta(hours=24)).count()
    room: int | None = None
    for limit, used in ((limits.per_minute, used_minute), (limits.per_day, used_day)):
        if limit:
            left = max(0, limit - used - in_flight)
            room = left if room is None else min(room, left)
    return Budget(used_minute, used_day, room)


def lock_for_budget() -> None:
    """Serialise budget decisions until the surrounding transaction ends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
