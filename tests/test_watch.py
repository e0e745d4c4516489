"""Watch mode (LISTEN/NOTIFY), priorities and sending limits on PostgreSQL."""

import signal
import subprocess
import time
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.utils import timezone

from outbox.api import enqueue
from outbox.models import OutboxMessage, Priority, Status
from outbox.watch import APPLICATION_NAME
from tests.processes import dispatcher_command, dispatcher_env, start_dispatcher
from tests.smtp_servers import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def queue_one(n=1, priority=Priority.NORMAL):
    return enqueue(
        EmailMessage(f"S{n}", "Body", "a@panacare.test", [f"p{n}@example.test"]),
        priority=priority,
    )


def listening_sessions():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            [APPLICATION_NAME],
        )
        return [pid for (pid,) in cursor.fetchall()]


@pytest.fixture
def watcher(sink):
    # A poll interval far longer than any wait below: only a notification
    # can explain a quick delivery.
    process = start_dispatcher(
        dispatcher_env(sink.port), "--watch", "--interval", "120"
    )
    wait_until(lambda: len(listening_sessions()) == 1, timeout=20)
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def test_committed_row_is_sent_without_waiting_for_the_poll(watcher, sink):
    started = time.monotonic()
    row = queue_one()

    [received] = sink.mailbox.wait_for(1, timeout=20)

    assert received.message_id == row.message_id
    assert time.monotonic() - started < 120
    wait_until(lambda: OutboxMessage.objects.get(pk=row.pk).status == Status.SENT)


def test_rolled_back_row_is_never_seen(watcher, sink):
    with pytest.raises(RuntimeError), transaction.atomic():
        queue_one(1)
        raise RuntimeError("the sign-up failed")
    kept = queue_one(2)

    [received] = sink.mailbox.wait_for(1, timeout=20)

    assert received.message_id == kept.message_id
    assert OutboxMessage.objects.count() == 1


def test_watcher_recovers_when_its_sessions_are_killed(watcher, sink):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    wait_until(lambda: len(listening_sessions()) == 1, timeout=30)

    row = queue_one()

    [received] = sink.mailbox.wait_for(1, timeout=20)
    assert received.message_id == row.message_id
    assert watcher.poll() is None


def test_watcher_stops_on_sigterm(watcher):
    watcher.send_signal(signal.SIGTERM)

    _out, err = watcher.communicate(timeout=15)

    assert watcher.returncode == 0 and "Traceback" not in err
    wait_until(lambda: listening_sessions() == [], timeout=10)


def test_cron_pass_beside_the_watcher_sends_nothing_twice(watcher, sink):
    rows = [queue_one(n) for n in range(20)]
    single = subprocess.run(
        dispatcher_command(),
        env=dispatcher_env(sink.port),
        capture_output=True,
        text=True,
        timeout=60,
    )

    received = sink.mailbox.wait_for(20, timeout=30)
    assert single.returncode == 0
    ids = [m.message_id for m in received]
    assert sorted(ids) == sorted(r.message_id for r in rows)


def test_account_mail_goes_before_older_bulk_mail(sink, dispatch):
    bulk = [queue_one(n, Priority.BULK) for n in range(3)]
    account = queue_one(9, Priority.ACCOUNT)

    dispatch(batch_size=2)

    assert OutboxMessage.objects.get(pk=account.pk).status == Status.SENT
    first = sink.mailbox.wait_for(2)[0]
    assert first.message_id == account.message_id
    assert len(bulk) == 3


def test_daily_limit_holds_across_two_dispatchers(sink):
    for n in range(10):
        queue_one(n)
    env = dispatcher_env(sink.port, OUTBOX_DAILY_LIMIT="5")

    processes = [start_dispatcher(env, "--batch-size", "2") for _ in range(2)]
    results = [p.communicate(timeout=60) for p in processes]

    assert [p.returncode for p in processes] == [0, 0], results
    assert OutboxMessage.objects.filter(status=Status.SENT).count() == 5
    waiting = OutboxMessage.objects.exclude(status=Status.SENT)
    assert set(waiting.values_list("status", "attempts")) == {(Status.PENDING, 0)}
    assert len(sink.mailbox) == 5


def test_rate_limit_per_minute_makes_rows_wait_not_fail(sink, dispatch, settings):
    settings.OUTBOX_RATE_LIMIT = 3
    for n in range(5):
        queue_one(n)

    first = dispatch()
    second = dispatch()

    assert first.sent == 3 and second.claimed == 0
    assert not OutboxMessage.objects.filter(status=Status.FAILED).exists()
    OutboxMessage.objects.filter(status=Status.SENT).update(
        sent_at=timezone.now() - timedelta(minutes=2)
    )
    assert dispatch().sent == 2


def test_status_shows_the_daily_budget(sink, dispatch, settings, capsys):
    from django.core.management import call_command

    settings.OUTBOX_DAILY_LIMIT = 500
    queue_one()
    dispatch()

    with pytest.raises(SystemExit):
        call_command("outbox_status")

    assert "sent_24h=1/500" in capsys.readouterr().out
