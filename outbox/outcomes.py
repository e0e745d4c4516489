"""Recording what happened to a row, without waiting for the commit.

An outcome is one transaction: the row's conditional UPDATE (it lands only
while the claim is ours) and the attempt's line of history. On PostgreSQL
both travel as one statement that the dispatcher sends and leaves to commit
while the next message's MAIL, RCPT and DATA go out; it collects the answer
just before handing that next message over. So the commit (~0.3 ms, mostly
the WAL flush) costs the run nothing, and still at most one delivered message
is ever unrecorded: a dispatcher killed at any moment sends at most one
message twice on its rerun, as when every write was waited for.

Elsewhere (SQLite, or inside a caller's transaction), and whenever an answer
cannot be read, the outcome is written the plain way, on a fresh connection if
need be.
"""

import functools
import logging
import select
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import OperationalError, connections, transaction

from outbox.exceptions import one_line
from outbox.models import OutboxAttempt, OutboxMessage
from outbox.reconnect import with_reconnect

logger = logging.getLogger(__name__)

# How long to wait for the database's answer before writing again on a new
# connection. The UPDATE is conditional, so the slow one landing later cannot
# undo anything.
ANSWER_TIMEOUT = 30.0

Settled = Callable[[bool], None]


@dataclass
class _Outcome:
    row: OutboxMessage
    changes: dict[str, Any]
    attempt: OutboxAttempt
    settled: Settled


class OutcomeWriter:
    """Holds at most one outcome: queued, or sent and perhaps still committing.

    The caller queues an outcome with ``write``, lets ``send`` put it on the
    wire while it waits on something else, and calls ``settle`` where the
    outcome must be known to be recorded.
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._queued: _Outcome | None = None
        self._in_flight: tuple[_Outcome, Any] | None = None

    def write(
        self,
        row: OutboxMessage,
        changes: dict[str, Any],
        attempt: OutboxAttempt,
        settled: Settled,
    ) -> None:
        """Queue ``changes`` to ``row``, written only while it is ours, and
        ``attempt``, its line of history.

        ``settled`` gets whether the row's write landed (False: the claim was
        taken over), at the latest from the next ``settle()``.
        """
        self.settle()
        self._queued = _Outcome(row, changes, attempt, settled)

    def send(self) -> None:
        """Put the queued outcome on its way without waiting for the commit."""
        outcome, self._queued = self._queued, None
        if outcome is None:
            return
        row = outcome.row
        wrapper = connections[self.using]
        if wrapper.vendor != "postgresql" or wrapper.in_atomic_block:
            outcome.settled(with_reconnect(lambda: _write_now(outcome)))
            return
        try:
            connection = self._send(outcome)
        except OperationalError as exc:
            logger.warning(
                "outbox.outcome_send_failed row=%s error=%s", row.id, one_line(exc)
            )
            outcome.settled(self._write_again(outcome))
            return
        # A fault of this module's own, not the database's: the outcome still
        # goes in, the plain way, and the traceback shows what to fix.
        except Exception:
            logger.exception("outbox.outcome_send_failed row=%s", row.id)
            outcome.settled(self._write_again(outcome))
            return
        self._in_flight = (outcome, connection)

    def settle(self) -> None:
        """Send the queued outcome, if any, wait for it and report it."""
        self.send()
        if self._in_flight is None:
            return
        outcome, connection = self._in_flight
        self._in_flight = None
        try:
            written = _collect(connection)
        except OperationalError as exc:
            logger.warning(
                "outbox.outcome_unanswered row=%s error=%s",
                outcome.row.id,
                one_line(exc),
            )
            _cancel(connection)
            written = self._write_again(outcome)
        else:
            if written:
                outcome.row.mirror(outcome.changes)
        outcome.settled(written)

    def _send(self, outcome: _Outcome) -> Any:
        import psycopg
        from psycopg.adapt import PyFormat, Transformer

        wrapper = connections[self.using]
        wrapper.ensure_connection()
        connection = wrapper.connection
        sql, params = _statement(outcome, wrapper)
        # psycopg's own adapters, with those Django set on this connection.
        adapt = Transformer(connection)
        values = adapt.dump_sequence(params, [PyFormat.AUTO] * len(params))
        try:
            connection.pgconn.send_query_params(
                _numbered(sql), values, adapt.types, adapt.formats
            )
            connection.pgconn.flush()
        except psycopg.Error as exc:
            raise OperationalError(str(exc)) from exc
        return connection

    def _write_again(self, outcome: _Outcome) -> bool:
        """Write on a fresh connection; True also if the first write landed."""
        # The connection may hold a half-read answer: never reuse it.
        connections[self.using].close()
        if with_reconnect(lambda: _write_now(outcome)):
            return True
        row = outcome.row
        current = with_reconnect(
            lambda: (
                OutboxMessage.objects.filter(pk=row.pk)
                .values("status", "attempts", "claim_token")
                .first()
            )
        )
        wanted = outcome.changes
        landed = current is not None and current == {
            "status": wanted["status"],
            "attempts": wanted["attempts"],
            "claim_token": None,
        }
        if landed:
            row.mirror(wanted)
        return landed


def _write_now(outcome: _Outcome) -> bool:
    with transaction.atomic():
        written = outcome.row._record(**outcome.changes)
        OutboxAttempt.objects.bulk_create([outcome.attempt], ignore_conflicts=True)
    return written


def _statement(outcome: _Outcome, wrapper: Any) -> tuple[str, list[Any]]:
    """One statement: the row's UPDATE and the history line, one transaction.

    It answers with how many rows the UPDATE changed; the history line is
    written either way, since the attempt happened even if the claim did not
    hold, and once only (see ``OutboxAttempt``'s constraint).
    """
    update = outcome.row.record_statement(outcome.changes)
    if update is None:
        raise OperationalError(f"row {outcome.row.id} is not claimed")
    update_sql, update_params = update
    attempt = outcome.attempt
    fields = [f for f in attempt._meta.concrete_fields if not f.primary_key]
    quote = wrapper.ops.quote_name
    sql = (
        f"WITH recorded AS ({update_sql} RETURNING 1), "
        f"history AS (INSERT INTO {quote(attempt._meta.db_table)} "
        f"({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join('%s' for _ in fields)}) ON CONFLICT DO NOTHING) "
        "SELECT count(*) FROM recorded"
    )
    params = [f.get_db_prep_save(getattr(attempt, f.attname), wrapper) for f in fields]
    return sql, [*update_params, *params]


@functools.lru_cache(maxsize=64)
def _numbered(sql: str) -> bytes:
    """Django's %s placeholders as PostgreSQL's $1, $2, ...

    The statements here are ours and hold no other percent sign.
    """
    parts = sql.split("%s")
    numbered = parts[0] + "".join(
        f"${n}{part}" for n, part in enumerate(parts[1:], start=1)
    )
    return numbered.encode()


def _cancel(connection: Any) -> None:
    """Ask the server to stop the statement we gave up on, so it cannot land
    after the write that replaces it (which would then find the claim gone)."""
    import psycopg

    try:
        connection.cancel_safe(timeout=5)
    except (psycopg.Error, OSError) as exc:
        logger.warning("outbox.outcome_cancel_failed error=%s", one_line(exc))


def _collect(connection: Any) -> bool:
    """Read the answer to the statement in flight; True if the row was ours."""
    import psycopg
    from psycopg import pq

    pgconn = connection.pgconn
    changed = 0
    error = None
    try:
        while True:
            pgconn.consume_input()
            if not pgconn.is_busy():
                break
            ready, _, _ = select.select([pgconn.socket], [], [], ANSWER_TIMEOUT)
            if not ready:
                raise OperationalError("no answer to the outcome's statement")
        while (result := pgconn.get_result()) is not None:
            if result.status == pq.ExecStatus.TUPLES_OK and result.ntuples:
                changed = int(result.get_value(0, 0) or b"0")
            elif result.status != pq.ExecStatus.TUPLES_OK:
                error = result.get_error_message()
    except (psycopg.Error, OSError) as exc:
        raise OperationalError(str(exc)) from exc
    if error is not None:
        raise OperationalError(error)
    return changed == 1
