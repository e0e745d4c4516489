"""The outbox's settings and their defaults, in one place.

Values are read from ``django.conf.settings`` each time they are used, never at
import time, so ``override_settings`` and per-process environments both work.
Constructor arguments of the dispatcher and the SMTP backend win over these.
"""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Dotted path of the Django email backend that really delivers.
    "OUTBOX_TRANSPORT": "outbox.smtp.DeadlineSMTPBackend",
    # Hard wall-clock seconds for one message, connecting and AUTH included.
    "OUTBOX_SEND_DEADLINE": 30.0,
    # Rows claimed per transaction.
    "OUTBOX_BATCH_SIZE": 20,
    # Wall-clock budget of one send_outbox run; keep it below the cron period.
    "OUTBOX_MAX_SECONDS": 50.0,
    # How long a claim holds; a row whose lease expired is due again.
    "OUTBOX_LEASE_SECONDS": 900.0,
    # Exponential backoff: first delay, largest delay, attempts before failing.
    "OUTBOX_RETRY_BASE": 60.0,
    "OUTBOX_RETRY_CAP": 3600.0,
    "OUTBOX_MAX_ATTEMPTS": 10,
    # Domain of generated Message-IDs; None takes the sender's domain, so the
    # request never asks the machine for its fully qualified name.
    "OUTBOX_MESSAGE_ID_DOMAIN": None,
    # How often cron starts a run, to check the run budget against.
    "OUTBOX_SCHEDULE_PERIOD": 60.0,
    # Sending limits shared by all dispatchers: messages per minute and per
    # 24 hours; 0 or None for none. Reaching one makes rows wait, never fail.
    "OUTBOX_RATE_LIMIT": None,
    "OUTBOX_DAILY_LIMIT": None,
    # Overrides of outbox.health.Thresholds for outbox_status, by field name.
    "OUTBOX_STATUS_THRESHOLDS": {},
    # Days after which finished rows may be purged, and after which the
    # bodies of sent rows (personal data, live links) are blanked.
    "OUTBOX_PURGE_AFTER_DAYS": 30,
    "OUTBOX_BLANK_SENT_AFTER_DAYS": 7,
}


def get(name: str) -> Any:
    """Return the outbox setting ``name``, or its default."""
    return getattr(settings, name, DEFAULTS[name])
