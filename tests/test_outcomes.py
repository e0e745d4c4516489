"""Outcomes committed while the next message goes out, on real PostgreSQL.

The dispatcher leaves each outcome to commit while the server reads the next
message's commands; these tests hold it to what that must not change: no
message is handed over while an earlier one is unrecorded, each outcome comes
with its line of history, and a database that fails in between stops the run
before the next message goes out.
"""

import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from django.db import OperationalError, connection

from outbox.dispatch import Dispatcher
from outbox.models import OutboxAttempt, OutboxMessage, Status
from tests.smtp_servers import ScriptedSession, ScriptedSMTPServer

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def session_on(dbname: str) -> psycopg.Connection:
    """A database session of the test's own, beside the dispatcher's."""
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname=dbname,
        autocommit=True,
    )


@pytest.fixture
def peek() -> Iterator[psycopg.Connection]:
    with session_on(connection.settings_dict["NAME"]) as session:
        yield session


def dispatcher_for(server: ScriptedSMTPServer) -> Dispatcher:
    return Dispatcher(
        batch_size=10,
        transport_options={"host": "127.0.0.1", "port": server.port},
    )


def sent_rows(session: psycopg.Connection) -> int:
    found = session.execute(
        "SELECT count(*) FROM outbox_outboxmessage WHERE status = 'sent'"
    ).fetchone()
    assert found is not None
    return int(found[0])


def lock_at_first_mail(
    row_id: int, seconds: float
) -> tuple[Callable[[ScriptedSession, str], str], threading.Thread]:
    """A MAIL reply that first locks ``row_id`` for ``seconds`` in a session
    of its own: by the first MAIL the claim is committed."""
    locked = threading.Event()

    def hold() -> None:
        with session_on(connection.settings_dict["NAME"]) as holder:
            with holder.transaction():
                holder.execute(
                    "SELECT 1 FROM outbox_outboxmessage WHERE id = %s FOR UPDATE",
                    [row_id],
                )
                locked.set()
                time.sleep(seconds)

    holder = threading.Thread(target=hold)

    def reply(session: ScriptedSession, _line: str) -> str:
        if session.messages == 0 and not holder.is_alive() and not locked.is_set():
            holder.start()
            locked.wait(10)
        return "250 2.1.0 OK"

    return reply, holder


def test_no_message_is_handed_over_while_an_earlier_one_is_unrecorded(make_row, peek):
    rows = [make_row() for _ in range(5)]
    recorded_at_handover: list[int] = []
    # The first outcome's commit is held up for a while; the second message
    # must wait for it rather than go out regardless.
    first_mail, holder = lock_at_first_mail(rows[0].id, seconds=0.5)

    def end_of_data(session: ScriptedSession, _line: str) -> str:
        # The server holds message number session.messages and has not
        # answered it: every message before it must be recorded by now.
        recorded_at_handover.append(sent_rows(peek))
        return "250 2.0.0 queued"

    server = ScriptedSMTPServer(
        replies={"MAIL": first_mail, "END": end_of_data}
    ).start()
    try:
        report = dispatcher_for(server).run_once()
    finally:
        server.stop()
        holder.join(10)

    assert report.sent == 5
    assert recorded_at_handover == [0, 1, 2, 3, 4]
    assert sent_rows(peek) == 5
    for row in rows:
        history = OutboxAttempt.objects.filter(message_id=row.id)
        assert list(history.values_list("outcome", flat=True)) == ["sent"]


def test_a_database_lost_before_the_next_handover_stops_the_run_unsent(make_row, peek):
    rows = [make_row() for _ in range(3)]
    database = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        dispatcher_pid = cursor.fetchone()[0]
    admin = session_on("postgres")

    def end_of_data(session: ScriptedSession, _line: str) -> str:
        if session.messages == 1:
            # Before the first message's 250: the dispatcher's session ends
            # and no new one is let in, so its outcome cannot be written.
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(%s)", [dispatcher_pid])
        return "250 2.0.0 queued"

    server = ScriptedSMTPServer(replies={"END": end_of_data}).start()
    try:
        with pytest.raises(OperationalError):
            dispatcher_for(server).run_once()
        handed_over = len(server.mailbox)
    finally:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        admin.close()
        server.stop()
        connection.close()

    # The first message is the one delivered and unrecorded; the second was
    # held back at its DATA; all three stay claimed, to be sent again once
    # their lease ends.
    assert handed_over == 1
    statuses = set(
        OutboxMessage.objects.filter(pk__in=[r.pk for r in rows]).values_list(
            "status", flat=True
        )
    )
    assert statuses == {Status.SENDING}


def test_a_message_whose_claim_could_run_out_is_not_handed_over(make_row):
    rows = [make_row() for _ in range(3)]
    # Leases of 6.5 s against a 5 s send deadline (tests/settings.py): once
    # the first outcome has waited 2 s on a lock, the second row's claim
    # could run out before its send ends, and another run may take it.
    first_mail, holder = lock_at_first_mail(rows[0].id, seconds=2)
    server = ScriptedSMTPServer(replies={"MAIL": first_mail}).start()
    try:
        dispatcher = Dispatcher(
            batch_size=10,
            max_seconds=1,
            lease_seconds=6.5,
            transport_options={"host": "127.0.0.1", "port": server.port},
        )
        report = dispatcher.run_once()
        handed_over = len(server.mailbox)
    finally:
        server.stop()
        holder.join(10)

    assert handed_over == 1
    assert report.fault is not None and "would run out" in report.fault
    statuses = dict(OutboxMessage.objects.values_list("id", "status"))
    assert statuses[rows[0].id] == Status.SENT
    assert statuses[rows[1].id] == Status.SENDING  # neither sent nor recorded
    assert statuses[rows[2].id] == Status.PENDING  # given back untouched


def test_an_unanswered_outcome_written_again_leaves_one_history_line(
    make_row, monkeypatch, caplog
):
    rows = [make_row() for _ in range(2)]
    # The first outcome waits on a lock for 2 s; the dispatcher gives up on
    # its answer after 0.5 s and writes it again on a new connection.
    monkeypatch.setattr("outbox.outcomes.ANSWER_TIMEOUT", 0.5)
    first_mail, holder = lock_at_first_mail(rows[0].id, seconds=2)
    server = ScriptedSMTPServer(replies={"MAIL": first_mail}).start()
    try:
        report = dispatcher_for(server).run_once()
    finally:
        server.stop()
        holder.join(10)

    assert "outbox.outcome_unanswered" in caplog.text
    assert report.sent == 2 and report.fault is None
    assert "lost_claim" not in caplog.text
    for row in rows:
        history = OutboxAttempt.objects.filter(message_id=row.id)
        assert list(history.values_list("outcome", flat=True)) == ["sent"]
    assert OutboxMessage.objects.filter(status=Status.SENT).count() == 2
