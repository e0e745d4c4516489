"""The state of the queue, as monitoring and the admin console see it.

States follow the monitoring-plugin convention: 0 ok, 1 warning, 2 critical.
"""

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min
from django.utils import timezone

from outbox import conf
from outbox.limits import SendingLimits, budget
from outbox.models import DispatcherRun, OutboxMessage, Status


class State(enum.IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True)
class Thresholds:
    """Ages in seconds and counts beyond which the queue is not healthy."""

    warn_oldest_due: float = 300
    crit_oldest_due: float = 1800
    warn_last_run: float = 180
    crit_last_run: float = 600
    warn_stuck: int = 1
    warn_failed_24h: int = 1

    @classmethod
    def from_settings(cls, **overrides: Any) -> "Thresholds":
        configured: dict[str, Any] = conf.get("OUTBOX_STATUS_THRESHOLDS") or {}
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**configured, **given})


@dataclass
class QueueHealth:
    counts: dict[str, int]
    oldest_due_seconds: float | None
    stuck: int
    failed_24h: int
    last_run_at: datetime | None
    last_run_outcome: str | None
    last_send_at: datetime | None
    daily_used: int = 0
    daily_limit: int | None = None
    state: State = State.OK
    reasons: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.name.lower()
        for key in ("last_run_at", "last_send_at"):
            value = data[key]
            data[key] = value.isoformat() if value else None
        return data

    def summary(self) -> str:
        def age(moment: datetime | None) -> str:
            if moment is None:
                return "never"
            return f"{(timezone.now() - moment).total_seconds():.0f}s ago"

        oldest = self.oldest_due_seconds
        parts = [
            *(f"{status}={n}" for status, n in self.counts.items()),
            f"oldest_due={'none' if oldest is None else f'{oldest:.0f}s'}",
            f"stuck={self.stuck}",
            f"failed_24h={self.failed_24h}",
            f"last_run={age(self.last_run_at)}",
            f"last_send={age(self.last_send_at)}",
            f"sent_24h={self.daily_used}"
            + (f"/{self.daily_limit}" if self.daily_limit else ""),
        ]
        head = f"OUTBOX {self.state.name}"
        if self.reasons:
            head += " - " + "; ".join(self.reasons)
        return f"{head} | " + " ".join(parts)


def queue_health(thresholds: Thresholds | None = None) -> QueueHealth:
    thresholds = thresholds or Thresholds.from_settings()
    now = timezone.now()
    rows = OutboxMessage.objects

    by_status = dict(
        rows.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    counts = {status.value: by_status.get(status.value, 0) for status in Status}
    oldest = rows.due(now).aggregate(oldest=Min("next_attempt_at"))["oldest"]
    last_run = DispatcherRun.objects.order_by("-finished_at").first()
    last_send = (
        DispatcherRun.objects.filter(sent__gt=0).order_by("-finished_at").first()
    )
    limits = SendingLimits.from_settings()
    health = QueueHealth(
        counts=counts,
        oldest_due_seconds=(now - oldest).total_seconds() if oldest else None,
        stuck=rows.stale(now).count(),
        failed_24h=rows.filter(
            status=Status.FAILED, failed_at__gte=now - timedelta(hours=24)
        ).count(),
        last_run_at=last_run.finished_at if last_run else None,
        last_run_outcome=last_run.outcome if last_run else None,
        last_send_at=last_send.finished_at if last_send else None,
        daily_used=budget(limits, now).used_day,
        daily_limit=limits.per_day,
    )
    _judge(health, thresholds, now)
    return health


def _judge(health: QueueHealth, limits: Thresholds, now: datetime) -> None:
    def flag(state: State, reason: str) -> None:
        health.state = max(health.state, state)
        health.reasons.append(reason)

    oldest = health.oldest_due_seconds
    if oldest is not None and oldest >= limits.crit_oldest_due:
        flag(State.CRITICAL, f"oldest due row waits {oldest:.0f}s")
    elif oldest is not None and oldest >= limits.warn_oldest_due:
        flag(State.WARNING, f"oldest due row waits {oldest:.0f}s")

    if health.last_run_at is None:
        flag(State.CRITICAL, "no dispatcher run recorded")
    else:
        silence = (now - health.last_run_at).total_seconds()
        if silence >= limits.crit_last_run:
            flag(State.CRITICAL, f"last dispatcher run {silence:.0f}s ago")
        elif silence >= limits.warn_last_run:
            flag(State.WARNING, f"last dispatcher run {silence:.0f}s ago")
        if health.last_run_outcome != "ok":
            flag(State.WARNING, f"last run ended: {health.last_run_outcome}")

    if health.stuck >= limits.warn_stuck:
        flag(State.WARNING, f"{health.stuck} rows past their lease")
    if health.failed_24h >= limits.warn_failed_24h:
        flag(State.WARNING, f"{health.failed_24h} rows failed in 24h")
