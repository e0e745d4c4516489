"""Several dispatchers, crashes and signals: real processes on PostgreSQL
(cases Q2, Q3, U1 (c), and the SIGTERM contract)."""

import os
import signal
import subprocess
import threading

import pytest
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from outbox.claim import claim_batch
from outbox.models import OutboxMessage, Status
from tests.processes import dispatcher_env, start_dispatcher
from tests.smtp_servers import ScriptedSMTPServer, SinkServer, wait_until
from users.services import register_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def slow_sink():
    server = SinkServer(delay=1.0).start()
    yield server
    server.stop()


def finish(process, timeout=60):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_two_dispatchers_started_together_send_each_row_once(slow_sink, make_row):
    rows = [make_row() for _ in range(10)]
    env = dispatcher_env(slow_sink.port)

    first = start_dispatcher(env, "--batch-size", "3")
    second = start_dispatcher(env, "--batch-size", "3")
    results = [finish(first), finish(second)]

    for code, _out, err in results:
        assert code == 0 and "Traceback" not in err
    received = slow_sink.mailbox.wait_for(10)
    assert len(received) == 10
    assert {m.message_id for m in received} == {r.message_id for r in rows}
    assert list(OutboxMessage.objects.values_list("status", "attempts").distinct()) == [
        (Status.SENT, 1)
    ]


def test_four_dispatchers_drain_a_thousand_rows_exactly_once(make_row):
    sink = SinkServer().start()
    try:
        rows = [make_row() for _ in range(1000)]
        env = dispatcher_env(sink.port)

        processes = [start_dispatcher(env, "--batch-size", "25") for _ in range(4)]
        results = [finish(p, timeout=120) for p in processes]

        for code, _out, err in results:
            assert code == 0 and "Traceback" not in err
        received = sink.mailbox.wait_for(1000)
        ids = [m.message_id for m in received]
        assert len(ids) == 1000 and set(ids) == {r.message_id for r in rows}
        assert (
            OutboxMessage.objects.filter(status=Status.SENT, attempts=1).count() == 1000
        )
    finally:
        sink.stop()


def test_dispatcher_killed_after_a_delivery_loses_nothing_and_resends_once(
    make_row,
):
    victim: list[subprocess.Popen[str]] = []

    def kill_after_third_delivery(reply):
        if reply.startswith("250 2.0.0 queued") and len(server.mailbox) == 3:
            os.kill(victim[0].pid, signal.SIGKILL)

    server = ScriptedSMTPServer(after_reply=kill_after_third_delivery).start()
    try:
        rows = [make_row() for _ in range(5)]
        # A short lease, so the rerun may take the dead dispatcher's rows soon.
        env = dispatcher_env(
            server.port,
            OUTBOX_LEASE_SECONDS="3",
            OUTBOX_MAX_SECONDS="1",
            OUTBOX_SEND_DEADLINE="1",
            EMAIL_TIMEOUT="1",
        )
        victim.append(start_dispatcher(env))
        code, _out, _err = finish(victim[0])
        assert code == -signal.SIGKILL
        assert OutboxMessage.objects.filter(status=Status.SENDING).count() == 3

        wait_until(
            lambda: OutboxMessage.objects.stale(timezone.now()).count() == 3,
            timeout=10,
        )
        code, _out, err = finish(start_dispatcher(env))

        assert code == 0, err
        assert OutboxMessage.objects.filter(status=Status.SENT).count() == 5
        received = server.mailbox.wait_for(5)
        assert len(received) <= 6
        ids = [m.message_id for m in received]
        assert set(ids) == {r.message_id for r in rows}
        duplicates = {i for i in ids if ids.count(i) > 1}
        assert len(duplicates) <= 1
        assert OutboxMessage.objects.filter(reclaims=1).count() == 3
    finally:
        server.stop()


def test_sigterm_finishes_the_message_in_flight_and_returns_the_rest():
    sink = SinkServer(delay=0.5).start()
    try:
        from django.core.mail import EmailMessage

        from outbox.api import enqueue

        for n in range(6):
            enqueue(EmailMessage(f"S{n}", "B", "a@panacare.test", [f"p{n}@ex.test"]))
        process = start_dispatcher(dispatcher_env(sink.port), "--batch-size", "6")
        sink.mailbox.wait_for(2, timeout=20)

        process.send_signal(signal.SIGTERM)
        code, out, err = finish(process)

        assert code == 0, err
        assert "interrupted=yes" in out
        sent = OutboxMessage.objects.filter(status=Status.SENT).count()
        assert sent == len(sink.mailbox) >= 2
        pending = OutboxMessage.objects.filter(status=Status.PENDING)
        assert pending.count() == 6 - sent
        assert all(row.attempts == 0 for row in pending)
        assert not OutboxMessage.objects.filter(status=Status.SENDING).exists()
    finally:
        sink.stop()


def test_dispatcher_neither_sees_nor_trips_on_an_uncommitted_signup(sink, dispatch):
    written = threading.Event()
    dispatched = threading.Event()
    errors: list[BaseException] = []

    def signup_held_open():
        try:
            with transaction.atomic():
                register_user(
                    email="slow@example.test", name="Slow", password="a sturdy pass 42"
                )
                written.set()
                dispatched.wait(30)
        except Exception as exc:  # noqa: BLE001  (handed to the main thread)
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    thread = threading.Thread(target=signup_held_open)
    thread.start()
    assert written.wait(30)

    during = dispatch()
    dispatched.set()
    thread.join(30)
    after = dispatch()

    assert not errors
    assert during.claimed == 0 and during.fault is None
    assert after.sent == 1
    assert sink.mailbox.wait_for(1)[0].recipients == ["slow@example.test"]


def test_claim_skips_rows_locked_by_another_dispatcher(make_row):
    rows = [make_row() for _ in range(4)]
    locked = threading.Event()
    release = threading.Event()

    def hold_first_two():
        with transaction.atomic():
            list(
                OutboxMessage.objects.filter(
                    pk__in=[rows[0].pk, rows[1].pk]
                ).select_for_update()
            )
            locked.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=hold_first_two)
    thread.start()
    assert locked.wait(30)

    claimed = claim_batch(10, lease_seconds=900)
    release.set()
    thread.join(30)

    assert [r.pk for r in claimed] == [rows[2].pk, rows[3].pk]


def test_dispatcher_whose_session_is_killed_mid_send_records_the_outcome_once(
    make_row,
):
    # The server holds each message 3 s before its 250: time to cut the
    # dispatcher's database session while a message is in flight.
    server = ScriptedSMTPServer(end_delay=3).start()
    try:
        rows = [make_row() for _ in range(3)]
        env = dispatcher_env(server.port, EMAIL_TIMEOUT="10", OUTBOX_SEND_DEADLINE="15")
        process = start_dispatcher(env)
        server.mailbox.wait_for(1, timeout=20)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        code, _out, err = finish(process)

        assert code == 0, err
        recoveries = (
            "outbox.database_reconnect",
            "outbox.outcome_send_failed",
            "outbox.outcome_unanswered",
        )
        assert any(line in _out + err for line in recoveries), err
        received = server.mailbox.wait_for(3)
        assert sorted(m.message_id for m in received) == sorted(
            r.message_id for r in rows
        )
        assert OutboxMessage.objects.filter(status=Status.SENT, attempts=1).count() == 3
    finally:
        server.stop()
