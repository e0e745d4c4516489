"""``manage.py send_outbox``: deliver due outbox rows.

Exit status: 0 when the run worked (nothing to do included), 1 when a delivery
fault stopped it, 2 when the configuration cannot work.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import FrameType
from typing import Any

from django.core.checks import ERROR
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone

from outbox.checks import check_outbox_settings
from outbox.claim import worker_name
from outbox.dispatch import Dispatcher, RunReport
from outbox.exceptions import one_line
from outbox.models import OutboxMessage, RunOutcome
from outbox.runs import record_run
from outbox.watch import Watcher


class Command(BaseCommand):
    help = "Send due outbox rows through the configured transport."

    # The outbox checks run in handle(), so that a bad configuration exits
    # with status 2 rather than Django's generic 1.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, help="Rows per claim.")
        parser.add_argument(
            "--max-seconds", type=float, help="Wall-clock budget of one run."
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--watch",
            action="store_true",
            help="Keep running; on PostgreSQL send each row as soon as it is "
            "committed (LISTEN/NOTIFY), and poll every --interval anyway.",
        )
        mode.add_argument(
            "--loop",
            action="store_true",
            help="Keep running, polling every --interval seconds.",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="Seconds between passes: default 2 with --loop, 30 with --watch.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started_at = timezone.now()
        try:
            dispatcher = self._dispatcher(options)
        except ImproperlyConfigured as exc:
            _record_refusal(started_at, str(exc))
            raise CommandError(str(exc), returncode=2) from exc
        with _stop_on_signals(dispatcher):
            # Each pass that did work is logged; no summary lines on top.
            if options["watch"]:
                Watcher(dispatcher, options["interval"] or 30.0).run()
                return
            if options["loop"]:
                dispatcher.run_forever(options["interval"] or 2.0)
                return
            try:
                report = dispatcher.run_once()
            except DatabaseError as exc:
                raise CommandError(
                    f"the database failed during the run: {one_line(exc)}",
                    returncode=1,
                ) from exc
        self._report(report)
        if report.fault:
            raise CommandError(f"delivery stopped: {report.fault}", returncode=1)

    def _dispatcher(self, options: dict[str, Any]) -> Dispatcher:
        """Build the dispatcher, or raise ImproperlyConfigured saying why not."""
        errors = [m for m in check_outbox_settings() if m.level >= ERROR]
        if errors:
            raise ImproperlyConfigured("; ".join(f"{m.id}: {m.msg}" for m in errors))
        for name in ("batch_size", "max_seconds", "interval"):
            value = options[name]
            if value is not None and value <= 0:
                raise ImproperlyConfigured(
                    f"--{name.replace('_', '-')} must be positive"
                )
        dispatcher = Dispatcher(
            batch_size=options["batch_size"], max_seconds=options["max_seconds"]
        )
        _check_database()
        return dispatcher

    def _report(self, report: RunReport) -> None:
        self.stdout.write(report.summary())


def _record_refusal(started_at: datetime, reason: str) -> None:
    """Leave a trace of the refused run where monitoring looks, if it can."""
    try:
        record_run(
            worker=worker_name(),
            started_at=started_at,
            outcome=RunOutcome.MISCONFIGURED,
            detail=reason,
        )
    except DatabaseError:
        pass  # the database is the problem; the exit status still says so


def _check_database() -> None:
    """Fail with one line, not a traceback, when the outbox table is out of reach."""
    try:
        OutboxMessage.objects.exists()
    except DatabaseError as exc:
        detail = str(exc).strip().splitlines()
        raise ImproperlyConfigured(
            f"the outbox table cannot be read ({type(exc).__name__}: "
            f"{detail[0] if detail else 'no detail'}); check DATABASE_URL and run "
            "manage.py migrate"
        ) from exc


@contextmanager
def _stop_on_signals(dispatcher: Dispatcher) -> Iterator[None]:
    """Turn SIGTERM and SIGINT into a graceful stop while the run lasts."""

    def stop(signum: int, frame: FrameType | None) -> None:
        dispatcher.request_stop()

    if threading.current_thread() is not threading.main_thread():
        # Python only lets the main thread set handlers; an in-process caller
        # on another thread stops the dispatcher through request_stop().
        yield
        return
    previous = {
        sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
