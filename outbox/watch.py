"""``send_outbox --watch``: dispatch as soon as a row is committed.

On PostgreSQL a trigger sends NOTIFY on the ``outbox_message`` channel when
rows are inserted, and NOTIFY is only delivered once the inserting
transaction commits; the watcher LISTENs on a connection of its own and runs
a pass at once. It also runs a pass every ``interval`` seconds, which covers
rows that come due later (retries) and anything a lost connection missed.
On other databases it only polls. Cron's single passes can run beside it:
rows are claimed, never sent twice.
"""

import enum
import logging
import time
from typing import Any

import psycopg
from django.db import DatabaseError, connection

from outbox.dispatch import Dispatcher

logger = logging.getLogger(__name__)

CHANNEL = "outbox_message"
APPLICATION_NAME = "outbox-watch"
# How often a wait looks at the stop flag: signals do not interrupt it.
_SLICE = 0.5


class _Pass(enum.Enum):
    MORE = "more"
    """Rows were sent; more may be due."""
    IDLE = "idle"
    """Nothing more to do until a notification or the interval."""
    LOST = "lost"
    """The database connection failed."""


class Watcher:
    def __init__(self, dispatcher: Dispatcher, interval: float) -> None:
        self.dispatcher = dispatcher
        self.interval = interval
        self._listener: psycopg.Connection[Any] | None = None

    @property
    def stopping(self) -> bool:
        return self.dispatcher.stop_requested.is_set()

    def run(self) -> None:
        logger.info("outbox.watch_started interval=%s", self.interval)
        try:
            while not self.stopping:
                outcome = self._pass()
                if outcome is _Pass.LOST:
                    # Both connections are gone; the next pass makes new ones.
                    self.dispatcher.stop_requested.wait(min(self.interval, 2.0))
                elif outcome is _Pass.IDLE:
                    self._wait()
        finally:
            self._close_listener()
            logger.info("outbox.watch_stopped")

    def _pass(self) -> "_Pass":
        """One dispatcher pass, listening first so no commit slips between."""
        try:
            self._ensure_listener()
            report = self.dispatcher.run_once()
        except (DatabaseError, psycopg.Error) as exc:
            # The database went away (restart, failover, a killed session).
            logger.warning("outbox.watch_database_lost error=%s", type(exc).__name__)
            connection.close()
            self._close_listener()
            return _Pass.LOST
        if report.claimed and report.fault is None:
            return _Pass.MORE
        return _Pass.IDLE

    def _wait(self) -> None:
        """Until a notification, the interval, or a stop request."""
        deadline = time.monotonic() + self.interval
        while not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._listener is None:
                self.dispatcher.stop_requested.wait(min(left, _SLICE))
                continue
            try:
                for _note in self._listener.notifies(
                    timeout=min(left, _SLICE), stop_after=1
                ):
                    return
            except psycopg.Error:
                logger.warning("outbox.watch_listener_lost")
                self._close_listener()
                return  # a pass at once covers what the lost session missed

    def _ensure_listener(self) -> None:
        if self._listener is not None or connection.vendor != "postgresql":
            return
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.update(autocommit=True, application_name=APPLICATION_NAME)
        listener = psycopg.connect(**params)
        listener.execute(f"LISTEN {CHANNEL}")
        self._listener = listener
        logger.info("outbox.watch_listening channel=%s", CHANNEL)

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except psycopg.Error:
                pass  # closing a dead connection: nothing left to release
            self._listener = None
