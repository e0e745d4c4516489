"""Records of dispatcher runs: the heartbeat monitoring reads.

Every run that did anything, and at least one pass a minute of a looping
dispatcher, leaves a ``DispatcherRun`` row, so a dead cron shows up as a
last run that is too old.
"""

import logging
from datetime import datetime

from django.utils import timezone

from outbox.models import DispatcherRun, RunOutcome

logger = logging.getLogger(__name__)


def record_run(
    *,
    worker: str,
    started_at: datetime,
    claimed: int = 0,
    sent: int = 0,
    retried: int = 0,
    failed: int = 0,
    outcome: RunOutcome = RunOutcome.OK,
    detail: str = "",
) -> DispatcherRun:
    return DispatcherRun.objects.create(
        worker=worker,
        started_at=started_at,
        finished_at=timezone.now(),
        claimed=claimed,
        sent=sent,
        retried=retried,
        failed=failed,
        outcome=outcome,
        detail=detail[:2000],
    )
