"""The outbox table: one row per email, from enqueue to its final state."""

import functools
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, models, router
from django.db.models import Q
from django.utils import timezone

MAX_ERROR_LENGTH = 2000


def storable(text: str) -> str:
    """Make server-supplied text safe for any text column.

    A reply may carry NUL or other control bytes (PostgreSQL refuses NUL in
    text) and may be long; an outcome that cannot be written would leave the
    row claimed and the message sent again after the lease.
    """
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return cleaned[:MAX_ERROR_LENGTH]


def smtp_code(code: int | None) -> int | None:
    """A reply code worth storing; smtplib says -1 for a line with no code."""
    return code if isinstance(code, int) and 100 <= code <= 599 else None


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    """Waiting for its next attempt time."""
    SENDING = "sending", "Sending"
    """Claimed by a dispatcher whose lease has not yet expired."""
    SENT = "sent", "Sent"
    """The server accepted the message for at least one recipient."""
    FAILED = "failed", "Failed"
    """Final: refused for good, unbuildable, or out of attempts."""
    CANCELLED = "cancelled", "Cancelled"
    """Final: an operator stopped it before it was sent."""


class Priority(models.IntegerChoices):
    """Lower goes first: a person waiting on a link beats a newsletter."""

    ACCOUNT = 0, "Account mail (activation, password reset)"
    NORMAL = 5, "Normal"
    BULK = 9, "Bulk"


class ErrorKind(models.TextChoices):
    """What the last failed attempt ran into, for filtering and alerting."""

    CONNECTION = "connection", "Connection or timeout"
    SENDER = "sender", "Sender refused (MAIL FROM)"
    UNCONFIRMED = "unconfirmed", "Possibly delivered (no reply after DATA)"
    TEMPORARY = "temporary", "Temporary refusal (4xx)"
    PERMANENT = "permanent", "Permanent refusal (5xx)"
    AUTH = "auth", "Authentication or TLS"
    THROTTLED = "throttled", "Server busy or quota reached"
    BUILD = "build", "Message could not be built"
    INTERNAL = "internal", "Unexpected error in the dispatcher"


class OutboxQuerySet(models.QuerySet["OutboxMessage"]):
    def due(self, now: datetime) -> "OutboxQuerySet":
        """Pending rows whose next attempt time has come."""
        return self.filter(status=Status.PENDING, next_attempt_at__lte=now)

    def stale(self, now: datetime) -> "OutboxQuerySet":
        """Rows claimed by a dispatcher whose lease has run out (it died)."""
        return self.filter(status=Status.SENDING, lease_expires_at__lte=now)

    def claimed_by(self, token: uuid.UUID) -> "OutboxQuerySet":
        return self.filter(status=Status.SENDING, claim_token=token)


class OutboxMessage(models.Model):
    # What the email is: enough to rebuild it exactly (see outbox.emails).
    message_id = models.CharField(max_length=255, db_index=True)
    from_email = models.TextField()
    to = models.JSONField(default=list, blank=True)
    cc = models.JSONField(default=list, blank=True)
    bcc = models.JSONField(default=list, blank=True)
    reply_to = models.JSONField(default=list, blank=True)
    subject = models.TextField(blank=True)
    body = models.TextField(blank=True)
    content_subtype = models.CharField(max_length=32, default="plain")
    alternatives = models.JSONField(default=list, blank=True)
    attachments = models.JSONField(default=list, blank=True)
    headers = models.JSONField(default=dict, blank=True)

    # Where it is in its life.
    priority = models.PositiveSmallIntegerField(
        choices=Priority.choices, default=Priority.NORMAL
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    reclaims = models.PositiveIntegerField(
        default=0, help_text="Times the row was taken back from a dispatcher that died."
    )
    unconfirmed_attempts = models.PositiveIntegerField(
        default=0,
        help_text="Attempts where the server took the message but never replied.",
    )
    last_error = models.TextField(blank=True)
    last_error_kind = models.CharField(
        max_length=16, choices=ErrorKind.choices, blank=True
    )
    last_smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    refused_recipients = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        verbose_name = "outbox message"
        permissions = [
            (
                "view_outboxmessage_body",
                "Can read message bodies, account links included",
            )
        ]
        indexes = [
            # Partial, so the due-rows query stays as fast with a million
            # finished rows as with none.
            models.Index(
                fields=["priority", "next_attempt_at", "id"],
                condition=Q(status="pending"),
                name="outbox_pending_due",
            ),
            # Sending limits count recent sends; finished history beyond the
            # window is never read.
            models.Index(
                fields=["sent_at"],
                condition=Q(status="sent"),
                name="outbox_sent_at",
            ),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="sending"),
                name="outbox_sending_lease",
            ),
            models.Index(fields=["status", "created_at"], name="outbox_status"),
        ]

    def __str__(self) -> str:
        return f"outbox message {self.pk} ({self.status})"

    @property
    def recipients(self) -> list[str]:
        return [*self.to, *self.cc, *self.bcc]

    # Transitions of a claimed row. Each writes only while the row is still
    # ours: a dispatcher that outlived its lease must not overwrite the outcome
    # of the one that took the row over. Each returns whether it was written.

    def mark_sent(self, refused: dict[str, tuple[int, str]] | None = None) -> bool:
        return self._record(**self.sent_changes(refused))

    def sent_changes(
        self, refused: dict[str, tuple[int, str]] | None = None
    ) -> dict[str, Any]:
        """What ``mark_sent`` writes, for a caller that writes it itself."""
        return {
            "status": Status.SENT,
            "attempts": self.attempts + 1,
            "sent_at": timezone.now(),
            "refused_recipients": {
                address: [smtp_code(code), storable(reply)]
                for address, (code, reply) in (refused or {}).items()
            },
        }

    def schedule_retry(
        self,
        delay: timedelta,
        error: str,
        kind: ErrorKind,
        code: int | None = None,
    ) -> bool:
        return self._record(**self.retry_changes(delay, error, kind, code))

    def retry_changes(
        self,
        delay: timedelta,
        error: str,
        kind: ErrorKind,
        code: int | None = None,
    ) -> dict[str, Any]:
        """What ``schedule_retry`` writes."""
        return {
            "status": Status.PENDING,
            "next_attempt_at": timezone.now() + delay,
            **self._error_changes(error, kind, code),
        }

    def mark_failed(self, error: str, kind: ErrorKind, code: int | None = None) -> bool:
        return self._record(**self.failed_changes(error, kind, code))

    def failed_changes(
        self, error: str, kind: ErrorKind, code: int | None = None
    ) -> dict[str, Any]:
        """What ``mark_failed`` writes."""
        return {
            "status": Status.FAILED,
            "failed_at": timezone.now(),
            **self._error_changes(error, kind, code),
        }

    def _error_changes(
        self, error: str, kind: ErrorKind, code: int | None
    ) -> dict[str, Any]:
        return {
            "attempts": self.attempts + 1,
            "last_error": storable(error),
            "last_error_kind": kind,
            "last_smtp_code": smtp_code(code),
            "unconfirmed_attempts": self.unconfirmed_attempts
            + (kind == ErrorKind.UNCONFIRMED),
        }

    def release(self) -> bool:
        """Give an untried row back to the queue as it was before the claim."""
        return self._record(status=Status.PENDING)

    # Operator transitions, for rows no dispatcher holds.

    def cancel(self) -> bool:
        """Stop a pending row for good; a row being sent is left alone."""
        return self._operate(Status.PENDING, status=Status.CANCELLED)

    def retry_now(self) -> bool:
        """Make a pending or failed row due now, keeping its attempt count."""
        now = timezone.now()
        return self._operate(
            [Status.PENDING, Status.FAILED],
            status=Status.PENDING,
            next_attempt_at=now,
            failed_at=None,
        )

    def _operate(self, allowed: Status | list[Status], **changes: Any) -> bool:
        statuses = allowed if isinstance(allowed, list) else [allowed]
        return self._update_if(Q(status__in=statuses), changes)

    def _record(self, **changes: Any) -> bool:
        statement = self.record_statement(changes)
        if statement is None:
            return False
        with connections[self._db()].cursor() as cursor:
            cursor.execute(*statement)
            written: bool = cursor.rowcount == 1
        if written:
            self.mirror(changes)
        return written

    def record_statement(self, changes: dict[str, Any]) -> tuple[str, list[Any]] | None:
        """The UPDATE that writes ``changes`` only while the claim is ours.

        ``changes`` gains the fields every outcome clears. Written as SQL
        rather than built by a QuerySet: building costs ~0.1 ms, which the
        dispatcher would pay for every message it sends.
        """
        if self.claim_token is None:
            return None
        changes.update(
            claim_token=None, lease_expires_at=None, updated_at=timezone.now()
        )
        db = connections[self._db()]
        sql, fields = _claimed_update(db.alias, tuple(changes))
        values = [*(changes[f.name] for f in fields[:-3])]
        values += [self.pk, Status.SENDING, self.claim_token]
        params = [
            f.get_db_prep_save(value, db)
            for f, value in zip(fields, values, strict=True)
        ]
        return sql, params

    def mirror(self, changes: dict[str, Any]) -> None:
        """Reflect a write that landed on this instance."""
        for field, value in changes.items():
            setattr(self, field, value)

    def _db(self) -> str:
        return self._state.db or router.db_for_write(type(self), instance=self)

    def _update_if(self, condition: Q, changes: dict[str, Any]) -> bool:
        """Write ``changes`` if the row still meets ``condition``; mirror them."""
        changes["updated_at"] = timezone.now()
        written = type(self).objects.filter(condition, pk=self.pk).update(**changes)
        if written:
            self.mirror(changes)
        return written == 1


@functools.lru_cache(maxsize=16)
def _claimed_update(
    alias: str, names: tuple[str, ...]
) -> tuple[str, list["models.Field[Any, Any]"]]:
    """SQL setting ``names`` on one row if it is still claimed by a token.

    Returns the fields of its placeholders, in order: ``names``, then the
    row's id, status and claim token.
    """
    meta = OutboxMessage._meta
    quote = connections[alias].ops.quote_name
    fields = [_column(meta.get_field(name)) for name in names]
    keys = [_column(meta.get_field(name)) for name in ("id", "status", "claim_token")]
    sql = "UPDATE {} SET {} WHERE {}".format(
        quote(meta.db_table),
        ", ".join(f"{quote(f.column)} = %s" for f in fields),
        " AND ".join(f"{quote(f.column)} = %s" for f in keys),
    )
    return sql, [*fields, *keys]


def _column(field: object) -> "models.Field[Any, Any]":
    assert isinstance(field, models.Field) and field.column, field
    return field


class AttemptOutcome(models.TextChoices):
    SENT = "sent", "Sent"
    """The server accepted the message."""
    RETRY = "retry", "Retry later"
    """A temporary failure; the row went back to pending."""
    FAILED = "failed", "Failed"
    """A permanent failure, or the last allowed attempt."""


class OutboxAttempt(models.Model):
    """One try at sending one row, for the history an operator reads.

    Written in the same transaction as the attempt's outcome, so history and
    state never disagree.
    """

    # Indexed by the unique constraint below, which begins with it.
    message = models.ForeignKey(
        OutboxMessage, on_delete=models.CASCADE, related_name="history", db_index=False
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error_kind = models.CharField(max_length=16, choices=ErrorKind.choices, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["message", "number"]
        constraints = [
            # Writing an outcome again, after its first write went unanswered
            # and may yet have landed, must not add a second line.
            models.UniqueConstraint(
                fields=["message", "number", "started_at", "worker"],
                name="outbox_attempt_once",
            )
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of row {self.message_id}: {self.outcome}"


class RunOutcome(models.TextChoices):
    OK = "ok", "Worked"
    """Ran to the end of the queue, its budget, or a stop request."""
    FAULT = "fault", "Stopped by a delivery fault"
    """The server, the network or the account stopped the run."""
    MISCONFIGURED = "misconfigured", "Refused to start"
    """The configuration cannot work."""


class DispatcherRun(models.Model):
    """One run of send_outbox: the heartbeat that shows cron is alive."""

    worker = models.CharField(max_length=200)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(db_index=True)
    claimed = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    retried = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=RunOutcome.choices)
    detail = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"run {self.pk} on {self.worker}: {self.outcome}"
