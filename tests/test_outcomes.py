"""Outcomes committed while the next message goes out, on real PostgreSQL.

The dispatcher leaves each outcome to commit while the server reads the next
message's commands; these tests hold it to what that must not change: no
message is handed over while an earlier one is unrecorded, each outcome comes
with its line of history, and a database that fails in between stops the run
before the next message goes out.
"""

import threading
import time
from collections.abc import Iterator

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


def test_no_message_is_handed_over_while_an_earlier_one_is_unrecorded(make_row, peek):
    rows = [make_row() for _ in range(5)]
    recorded_at_handover: list[int] = []
    locked = threading.Event()

    def hold_first_row() -> None:
        # The first outcome's commit is held up for a while; the second
        # message must wait for it rather than go out regardless.
        with session_on(connection.settings_dict["NAME"]) as holder:
            with holder.transaction():
                holder.execute(
                    "SELECT 1 FROM outbox_outboxmessage WHERE id = %s FOR UPDATE",
                    [rows[0].id],
                )
                locked.set()
                time.sleep(0.5)

    holder = threading.Thread(target=hold_first_row)

    def first_mail(session: ScriptedSession, _line: str) -> str:
        if session.messages == 0:  # the claim is committed by now
            holder.start()
            locked.wait(10)
        return "250 2.1.0 OK"

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
