"""A run's budget, batches and clock (case Q5 at test scale; the 50,000-row
memory figure is printed by bench/dispatch.py)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from outbox import dispatch as dispatch_module
from outbox.claim import claim_batch
from outbox.models import OutboxMessage, Status
from tests.smtp_servers import SinkServer


@pytest.fixture
def slow_sink(settings):
    server = SinkServer(delay=0.01).start()
    settings.EMAIL_PORT = server.port
    yield server
    server.stop()


@pytest.mark.django_db
def test_huge_queue_is_taken_one_batch_at_a_time_and_the_run_stops_at_its_budget(
    slow_sink, monkeypatch, dispatch
):
    body = "x" * 20_000
    template = OutboxMessage(
        message_id="<t@panacare.test>", from_email="a@panacare.test", body=body
    )
    OutboxMessage.objects.bulk_create(
        [
            OutboxMessage(
                message_id=f"<{n}@panacare.test>",
                from_email=template.from_email,
                to=[f"p{n}@example.test"],
                subject=f"S{n}",
                body=body,
                headers={"Date": "Fri, 04 Dec 2026 17:00:00 -0000"},
            )
            for n in range(2000)
        ]
    )
    in_flight_at_claim: list[int] = []
    real_claim = claim_batch

    def claim_and_count(*args, **kwargs):
        in_flight_at_claim.append(
            OutboxMessage.objects.filter(status=Status.SENDING).count()
        )
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(dispatch_module, "claim_batch", claim_and_count)

    report = dispatch(batch_size=100, max_seconds=2)

    assert in_flight_at_claim and set(in_flight_at_claim) == {0}
    assert 0 < report.sent < 2000
    assert report.seconds < 2 + 1
    sent = OutboxMessage.objects.filter(status=Status.SENT)
    assert sent.count() == report.sent == len(slow_sink.mailbox)
    untouched = OutboxMessage.objects.exclude(status=Status.SENT)
    assert untouched.count() == 2000 - report.sent
    assert set(untouched.values_list("status", "attempts").distinct()) == {
        (Status.PENDING, 0)
    }


@pytest.mark.django_db
def test_retry_times_are_right_when_the_site_time_zone_is_not_utc(
    settings, scripted, make_row, dispatch
):
    settings.TIME_ZONE = "Pacific/Kiritimati"  # UTC+14
    scripted(replies={"RCPT": "450 4.2.1 Mailbox busy"})
    row = make_row()

    before = timezone.now()
    dispatch(retry_base=600, retry_cap=600)
    again = dispatch(retry_base=600, retry_cap=600)

    row.refresh_from_db()
    assert row.next_attempt_at.utcoffset() == timedelta(0)
    assert before + timedelta(seconds=300) <= row.next_attempt_at
    assert row.next_attempt_at <= timezone.now() + timedelta(seconds=600)
    assert again.claimed == 0


@pytest.mark.django_db(transaction=True)
def test_watcher_polls_and_stops_on_request_on_any_database(sink):
    import threading

    from django.core.mail import EmailMessage
    from django.db import connection

    from outbox.api import enqueue
    from outbox.dispatch import Dispatcher
    from outbox.watch import Watcher

    dispatcher = Dispatcher()
    watcher = Watcher(dispatcher, interval=0.2)

    def run():
        try:
            watcher.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        row = enqueue(EmailMessage("S", "B", "a@panacare.test", ["p@example.test"]))
        [received] = sink.mailbox.wait_for(1, timeout=20)
    finally:
        dispatcher.request_stop()
        thread.join(20)

    assert not thread.is_alive()
    assert received.message_id == row.message_id
