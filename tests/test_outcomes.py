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
from django.core.management import CommandError, call_command
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


@pytest.fixture
def outage() -> Iterator[Callable[[ScriptedSession, str], str]]:
    """An end-of-DATA reply that, before answering the first message, ends
    the dispatcher's database session and lets no new one in for 1.5 s: too
    long for the run's one reconnect, short enough to give rows back."""
    database = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        dispatcher_pid = cursor.fetchone()[0]
    admin = session_on("postgres")
    allow = f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'
    back = threading.Timer(1.5, lambda: session_on("postgres").execute(allow))

    def end_of_data(session: ScriptedSession, _line: str) -> str:
        if session.messages == 1 and session.index == 1:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(%s)", [dispatcher_pid])
            back.start()
        return "250 2.0.0 queued"

    try:
        yield end_of_data
    finally:
        if back.is_alive():
            back.join(10)
        admin.execute(allow)
        admin.close()
        connection.close()


def test_a_database_lost_before_the_next_handover_stops_the_run_unsent(
    make_row, outage
):
    rows = [make_row() for _ in range(3)]
    server = ScriptedSMTPServer(replies={"END": outage}).start()
    try:
        with pytest.raises(OperationalError):
            dispatcher_for(server).run_once()
    finally:
        server.stop()

    # The first message is the one delivered and unrecorded: it stays claimed
    # and goes again, with the same Message-ID, once its lease ends. The
    # second was held back at its DATA; it and the third are pending again.
    assert len(server.mailbox) == 1
    statuses = dict(OutboxMessage.objects.values_list("id", "status"))
    assert statuses == {
        rows[0].id: Status.SENDING,
        rows[1].id: Status.PENDING,
        rows[2].id: Status.PENDING,
    }
    assert not OutboxMessage.objects.filter(attempts__gt=0).exists()


def test_the_command_says_in_one_line_that_the_database_failed(
    make_row, outage, settings
):
    [make_row() for _ in range(2)]
    server = ScriptedSMTPServer(replies={"END": outage}).start()
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    try:
        with pytest.raises(CommandError) as failed:
            call_command("send_outbox")
    finally:
        server.stop()

    assert failed.value.returncode == 1
    message = str(failed.value)
    assert message.startswith("the database failed during the run: ")
    assert "\n" not in message


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


def test_a_loop_outlives_a_database_outage(make_row, outage, caplog):
    rows = [make_row() for _ in range(3)]
    dispatcher: Dispatcher | None = None

    def end_of_data(session: ScriptedSession, line: str) -> str:
        reply: str = outage(session, line)
        if len(server.mailbox) == 3 and dispatcher is not None:
            dispatcher.request_stop()
        return reply

    server = ScriptedSMTPServer(replies={"END": end_of_data}).start()
    try:
        dispatcher = dispatcher_for(server)
        dispatcher.run_forever(interval=0.2)
    finally:
        server.stop()

    assert "outbox.database_unavailable" in caplog.text
    statuses = dict(OutboxMessage.objects.values_list("id", "status"))
    assert statuses == {
        rows[0].id: Status.SENDING,  # delivered, unrecorded: its lease decides
        rows[1].id: Status.SENT,
        rows[2].id: Status.SENT,
    }
