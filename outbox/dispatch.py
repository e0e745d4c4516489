"""The dispatcher: claim due rows, send them, record each outcome.

One run reads: claim a batch (committed before any network I/O), send each
row over one reused connection, record its outcome in its own short
transaction, and decide whether to go on. A run ends when the queue is empty,
when its time budget could not cover another batch, when a fault that is not
the row's own (the server, the network, the account) stops it, or when it is
asked to stop. Rows it claimed and did not try go back untouched.

Its own work (rendering the next row, writing the last outcome) is done while
the server is busy with the current message; a message is handed over only
once the outcome before it is recorded.

Delivery is at least once: a dispatcher that dies after the server accepted a
message but before the row was marked leaves the row to be reclaimed when its
lease expires, and the message is sent again with the same Message-ID.
"""

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.db import DatabaseError, connection
from django.utils import timezone

from outbox import conf
from outbox.claim import claim_batch, release, worker_name
from outbox.classify import Action, Verdict, classify
from outbox.emails import Envelope, render, to_email_message
from outbox.exceptions import HandoverBlocked, LeaseExpired, one_line
from outbox.limits import SendingLimits
from outbox.models import (
    AttemptOutcome,
    ErrorKind,
    OutboxAttempt,
    OutboxMessage,
    RunOutcome,
    smtp_code,
    storable,
)
from outbox.outcomes import OutcomeWriter
from outbox.reconnect import with_reconnect
from outbox.runs import record_run
from outbox.smtp import DeadlineSMTPBackend, Hooks

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class RunReport:
    """What one run did; ``fault`` says why a delivery fault stopped it."""

    started_at: datetime = field(default_factory=timezone.now)
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0
    fault: str | None = None
    interrupted: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        line = (
            f"claimed={self.claimed} sent={self.sent} retried={self.retried} "
            f"failed={self.failed} released={self.released} "
            f"seconds={self.seconds:.2f}"
        )
        if self.fault:
            line += f" stopped={self.fault!r}"
        if self.interrupted:
            line += " interrupted=yes"
        return line


class Dispatcher:
    """Send due outbox rows through a Django email backend.

    Every argument left as None falls back to the outbox setting of the same
    meaning (see ``outbox.conf``).
    """

    def __init__(
        self,
        *,
        batch_size: int | None = None,
        max_seconds: float | None = None,
        lease_seconds: float | None = None,
        max_attempts: int | None = None,
        retry_base: float | None = None,
        retry_cap: float | None = None,
        transport: str | BaseEmailBackend | None = None,
        transport_options: dict[str, Any] | None = None,
        limits: SendingLimits | None = None,
    ) -> None:
        self.batch_size = int(_pick(batch_size, "OUTBOX_BATCH_SIZE"))
        self.max_seconds = float(_pick(max_seconds, "OUTBOX_MAX_SECONDS"))
        self.lease_seconds = float(_pick(lease_seconds, "OUTBOX_LEASE_SECONDS"))
        self.max_attempts = int(_pick(max_attempts, "OUTBOX_MAX_ATTEMPTS"))
        self.retry_base = float(_pick(retry_base, "OUTBOX_RETRY_BASE"))
        self.retry_cap = float(_pick(retry_cap, "OUTBOX_RETRY_CAP"))
        self.transport = transport or conf.get("OUTBOX_TRANSPORT")
        self.transport_options = transport_options or {}
        self.limits = limits or SendingLimits.from_settings()
        self.worker = worker_name()
        self.send_deadline = self._send_deadline()
        self._check_lease_covers_a_run()
        self._recorded_at: float | None = None
        self.outcomes = OutcomeWriter()
        self.stop_requested = threading.Event()

    def _check_lease_covers_a_run(self) -> None:
        """Refuse a run that could outlive its claims.

        A row is held for at most the run budget plus one send; a shorter
        lease lets another dispatcher reclaim rows this one is still sending.
        (Time spent waiting on the database is not bounded by either: the
        lease itself is checked again before each message goes out.)
        """
        held = self.max_seconds + self.send_deadline
        if self.lease_seconds < held:
            raise ImproperlyConfigured(
                f"OUTBOX_LEASE_SECONDS ({self.lease_seconds:g} s) is shorter than a "
                f"run may hold a row (budget {self.max_seconds:g} s + send deadline "
                f"{self.send_deadline:g} s)"
            )
        if self.batch_size < 1 or self.max_seconds <= 0 or self.max_attempts < 1:
            raise ImproperlyConfigured(
                "batch size, run budget and maximum attempts must be positive"
            )

    def _send_deadline(self) -> float:
        deadline = getattr(self.transport, "deadline", None)
        if deadline is None:
            deadline = self.transport_options.get(
                "deadline", conf.get("OUTBOX_SEND_DEADLINE")
            )
        return float(deadline)

    def request_stop(self) -> None:
        """Finish the message in flight, give the rest back, and end the run."""
        self.stop_requested.set()

    # A run.

    def run_once(self) -> RunReport:
        report = RunReport(started_at=timezone.now())
        started = time.monotonic()
        backend = self._open_transport()
        try:
            while not self.stop_requested.is_set():
                if not self._budget_covers_a_batch(report, started):
                    break

                batch = self._database(
                    lambda: claim_batch(
                        self.batch_size, self.lease_seconds, self.worker, self.limits
                    )
                )
                if not batch:
                    break
                report.claimed += len(batch)

                self._send_batch(batch, backend, report, started)
                if report.fault or len(batch) < self.batch_size:
                    break
        finally:
            self.outcomes.settle()
            _close_quietly(backend)
            report.interrupted = self.stop_requested.is_set()
            report.seconds = time.monotonic() - started
        # An idle pass is routine in loop mode; keep INFO for runs that did work.
        level = logging.INFO if report.claimed or report.fault else logging.DEBUG
        logger.log(level, "outbox.run_finished %s", report.summary())
        self._heartbeat(report)
        return report

    def _heartbeat(self, report: RunReport) -> None:
        """Record the run; for idle passes of a loop, once a minute is enough."""
        now = time.monotonic()
        idle = not report.claimed and not report.fault
        if idle and self._recorded_at is not None and now - self._recorded_at < 60:
            return
        self._database(
            lambda: record_run(
                worker=self.worker,
                started_at=report.started_at,
                claimed=report.claimed,
                sent=report.sent,
                retried=report.retried,
                failed=report.failed,
                outcome=RunOutcome.FAULT if report.fault else RunOutcome.OK,
                detail=report.fault or "",
            )
        )
        self._recorded_at = now

    def run_forever(self, interval: float) -> None:
        """Run again and again until asked to stop; for development.

        A database that fails ends the pass, not the loop.
        """
        while not self.stop_requested.is_set():
            try:
                report = self.run_once()
            except DatabaseError as exc:
                logger.warning("outbox.database_unavailable error=%s", one_line(exc))
                connection.close()
                self.stop_requested.wait(interval)
                continue
            if report.claimed and not report.fault:
                continue
            self.stop_requested.wait(interval)

    def _budget_covers_a_batch(self, report: RunReport, started: float) -> bool:
        elapsed = time.monotonic() - started
        left = self.max_seconds - elapsed
        if left <= 0:
            return False
        tried = report.sent + report.retried + report.failed
        if not tried:
            return True
        # Judge by this run's own pace: a batch that would not finish inside
        # the budget is better left to the next run than claimed and handed
        # back.
        per_message = elapsed / tried
        return left >= per_message * self.batch_size

    def _send_batch(
        self,
        batch: list[OutboxMessage],
        backend: BaseEmailBackend,
        report: RunReport,
        started: float,
    ) -> None:
        # The next row is rendered while the server takes in this one.
        ahead: dict[int, Prepared] = {}
        for index, row in enumerate(batch):
            out_of_time = time.monotonic() - started >= self.max_seconds
            if self.stop_requested.is_set() or out_of_time:
                report.released += self._database(partial(release, batch[index:]))
                return

            following = batch[index + 1 : index + 2]
            prepared = ahead.pop(row.id, None) or _prepare(row)
            try:
                verdict = self._attempt(
                    row,
                    prepared,
                    partial(_prepare_into, ahead, following),
                    backend,
                    report,
                )
            # The database failed and ends the run; the rows not handed over
            # need not wait for their lease if it is back soon.
            except HandoverBlocked as exc:
                report.released += self._give_back(batch[index:])
                assert exc.__cause__ is not None
                raise exc.__cause__ from None
            except DatabaseError:
                report.released += self._give_back(batch[index + 1 :])
                raise
            if verdict is not None and verdict.action is Action.STOP:
                report.fault = verdict.text
                report.released += self._database(partial(release, batch[index + 1 :]))
                return

    def _give_back(self, rows: list[OutboxMessage]) -> int:
        """Release ``rows`` if the database answers within a few seconds."""
        for wait in (0.0, 1.0, 2.0, 4.0):
            if wait and self.stop_requested.wait(wait):
                break  # asked to stop: the lease will do
            try:
                return release(rows)
            except DatabaseError:
                connection.close()
        logger.warning("outbox.release_failed rows=%s", len(rows))
        return 0

    def _database(self, step: Callable[[], T]) -> T:
        """Run a database step of the run's own, after the outcome in flight:
        they share one session, which takes one statement at a time."""
        self.outcomes.settle()
        return with_reconnect(step)

    # One row.

    def _attempt(
        self,
        row: OutboxMessage,
        prepared: "Prepared",
        after_handover: Callable[[], None],
        backend: BaseEmailBackend,
        report: RunReport,
    ) -> Verdict | None:
        started = time.monotonic()
        started_at = timezone.now()
        if isinstance(prepared, Exception):
            verdict = Verdict(Action.FAIL, ErrorKind.BUILD, None, one_line(prepared))
            self._record(row, verdict, report, started, started_at)
            return verdict

        message, envelope = prepared
        try:
            refused = self._deliver(row, backend, envelope, message, after_handover)
        except LeaseExpired as exc:
            # Not sent, and not ours to record: another run may hold it now.
            logger.error("outbox.lease_expired row=%s", row.id)
            return Verdict(Action.STOP, ErrorKind.INTERNAL, None, str(exc))
        except HandoverBlocked:
            raise  # nothing went out: the database failed (see _send_batch)
        # The send boundary: every error of the transport is classified and
        # recorded on the row; unexpected ones are logged with a traceback.
        except Exception as exc:
            verdict = classify(exc)
            if verdict.kind is ErrorKind.INTERNAL:
                logger.exception("outbox.internal_error row=%s", row.id)
            self._record(row, verdict, report, started, started_at)
            return verdict

        number = row.attempts + 1
        elapsed = _ms(started)
        attempt = self._attempt_line(
            row, number, started_at, elapsed, AttemptOutcome.SENT
        )
        report.sent += 1

        def settled(written: bool) -> None:
            logger.info(
                "outbox.sent row=%s attempt=%s refused=%s ms=%d%s",
                row.id,
                number,
                len(refused),
                elapsed,
                "" if written else " lost_claim=yes",
            )

        self.outcomes.write(row, row.sent_changes(refused), attempt, settled)
        return None

    def _deliver(
        self,
        row: OutboxMessage,
        backend: BaseEmailBackend,
        envelope: Envelope,
        message: Any,
        after_handover: Callable[[], None],
    ) -> dict[str, Any]:
        """Send through ``backend``; ours reports refused recipients, others can't.

        With ours, the last outcome goes to the database while the server
        reads this message's first command, and must be recorded before the
        message is handed over (see ``outbox.outcomes``).
        """
        if isinstance(backend, DeadlineSMTPBackend):
            hooks = Hooks(
                meanwhile=partial(_or_blocked, self.outcomes.send),
                before_handover=partial(self._before_handover, row),
                after_handover=after_handover,
            )
            return backend.deliver(envelope, hooks)
        self._before_handover(row)
        if backend.send_messages([message]) != 1:
            raise RuntimeError(f"{type(backend).__name__} did not send the message")
        return {}

    def _before_handover(self, row: OutboxMessage) -> None:
        """Hand a message over only if the outcome before it is recorded and
        the claim on it will outlast the send.

        Waiting on the database does not stop the lease's clock; once it may
        have run out, another dispatcher may be sending the same row.
        """
        _or_blocked(self.outcomes.settle)
        expires_at = row.lease_expires_at
        left = (expires_at - timezone.now()).total_seconds() if expires_at else 0.0
        if left < self.send_deadline:
            raise LeaseExpired(
                f"the claim on row {row.id} would run out before its send ends "
                f"({left:.1f} s left, send deadline {self.send_deadline:g} s); "
                "not sent"
            )

    def _record(
        self,
        row: OutboxMessage,
        verdict: Verdict,
        report: RunReport,
        started: float,
        started_at: datetime,
    ) -> None:
        attempt = row.attempts + 1
        # An attempt the server may have delivered does not use up one of the
        # row's attempts, so it is never what fails a row; it still counts up
        # to a second allowance, so a server that always swallows the reply
        # cannot keep a row going forever.
        unconfirmed = row.unconfirmed_attempts + (verdict.kind is ErrorKind.UNCONFIRMED)
        limit = self.max_attempts + min(unconfirmed, self.max_attempts)
        out_of_attempts = attempt >= limit
        if verdict.action is Action.FAIL or out_of_attempts:
            changes = row.failed_changes(verdict.text, verdict.kind, verdict.code)
            report.failed += 1
            outcome = AttemptOutcome.FAILED
        else:
            changes = row.retry_changes(
                self.backoff(attempt), verdict.text, verdict.kind, verdict.code
            )
            report.retried += 1
            outcome = AttemptOutcome.RETRY
        elapsed = _ms(started)
        line = self._attempt_line(row, attempt, started_at, elapsed, outcome, verdict)

        def settled(written: bool) -> None:
            log = logger.warning if outcome is AttemptOutcome.RETRY else logger.error
            log(
                "outbox.%s row=%s attempt=%s kind=%s code=%s ms=%d%s",
                outcome.value,
                row.id,
                attempt,
                verdict.kind.value,
                verdict.code,
                elapsed,
                "" if written else " lost_claim=yes",
            )

        self.outcomes.write(row, changes, line, settled)

    def _attempt_line(
        self,
        row: OutboxMessage,
        number: int,
        started_at: datetime,
        duration_ms: int,
        outcome: AttemptOutcome,
        verdict: Verdict | None = None,
    ) -> OutboxAttempt:
        """The attempt's line of history, written with its outcome."""
        return OutboxAttempt(
            message_id=row.id,
            number=number,
            started_at=started_at,
            duration_ms=duration_ms,
            outcome=outcome,
            smtp_code=smtp_code(verdict.code) if verdict else None,
            error_kind=verdict.kind if verdict else "",
            error=storable(verdict.text) if verdict else "",
            worker=self.worker,
        )

    def backoff(self, attempt: int) -> timedelta:
        """Delay before retry ``attempt + 1``: exponential, capped, jittered.

        The jitter keeps rows that failed together from coming due together.
        """
        ceiling = min(self.retry_cap, self.retry_base * 2 ** max(attempt - 1, 0))
        return timedelta(seconds=random.uniform(ceiling / 2, ceiling))

    def _open_transport(self) -> BaseEmailBackend:
        if isinstance(self.transport, BaseEmailBackend):
            return self.transport
        backend = get_connection(self.transport, **self.transport_options)
        assert isinstance(backend, BaseEmailBackend)
        return backend


Prepared = tuple[EmailMessage, Envelope] | Exception


def _prepare(row: OutboxMessage) -> Prepared:
    """The row's email and its rendered bytes, or what stops it being built."""
    try:
        message = to_email_message(row)
        return message, render(message)
    # This is the poison boundary: whatever stops a row from becoming an
    # email fails that row alone, so one bad row never halts the queue.
    except Exception as exc:  # noqa: BLE001
        return exc


def _prepare_into(ahead: dict[int, Prepared], rows: list[OutboxMessage]) -> None:
    for row in rows:
        ahead[row.id] = _prepare(row)


def _or_blocked(step: Callable[[], None]) -> None:
    """Run a database step that must succeed before a message goes out."""
    try:
        step()
    except DatabaseError as exc:
        raise HandoverBlocked("an earlier outcome could not be recorded") from exc


def _close_quietly(backend: BaseEmailBackend) -> None:
    try:
        backend.close()
    except OSError:
        logger.warning("outbox.transport_close_failed")


def _pick(value: Any, setting: str) -> Any:
    return conf.get(setting) if value is None else value


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
