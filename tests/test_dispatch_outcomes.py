"""What each SMTP answer does to the row and to the run (cases S5-S8, Q1, Q4)."""

import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from outbox.models import ErrorKind, OutboxMessage, Status
from tests.smtp_servers import CLOSE, HANG

AUTH = {"username": "panacare", "password": "app-password"}


def statuses():
    return list(OutboxMessage.objects.order_by("id").values_list("status", "attempts"))


# Answers that mean "stop now, try later" (S5).


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("replies", "options", "kind", "code"),
    [
        ({"GREETING": "421 4.3.2 Service not available"}, {}, ErrorKind.THROTTLED, 421),
        ({"EHLO": "421 4.7.0 Try again later" + CLOSE}, {}, ErrorKind.CONNECTION, None),
        ({"AUTH": "535 5.7.8 Bad credentials"}, AUTH, ErrorKind.AUTH, 535),
        ({"AUTH": "454 4.7.0 Too many login attempts"}, AUTH, ErrorKind.AUTH, 454),
        (
            {"MAIL": "550 5.4.5 Daily user sending quota exceeded"},
            {},
            ErrorKind.THROTTLED,
            550,
        ),
    ],
    ids=["421-greeting", "421-ehlo-disconnect", "535-auth", "454-auth", "550-5.4.5"],
)
def test_answer_that_means_try_later_stops_the_run_and_fails_nothing(
    scripted, make_row, dispatch, replies, options, kind, code
):
    server = scripted(replies=replies)
    first, _second, _third = make_row(), make_row(), make_row()

    report = dispatch(transport_options=options)

    assert report.fault and report.retried == 1 and report.released == 2
    assert statuses() == [("pending", 1), ("pending", 0), ("pending", 0)]
    first.refresh_from_db()
    assert first.last_error_kind == kind and first.last_smtp_code == code
    assert first.next_attempt_at > timezone.now()
    assert server.connections == 1
    assert not OutboxMessage.objects.filter(status=Status.FAILED).exists()


@pytest.mark.django_db
def test_command_fails_with_status_1_and_says_why_when_a_fault_stops_the_run(
    scripted, make_row, settings
):
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "panacare", "wrong"
    scripted(replies={"AUTH": "535 5.7.8 Bad credentials"})
    make_row()

    with pytest.raises(CommandError) as failed:
        call_command("send_outbox")

    assert failed.value.returncode == 1
    assert "535" in str(failed.value) and "delivery stopped" in str(failed.value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides",
    [
        {"EMAIL_USE_TLS": True, "EMAIL_USE_SSL": True},
        {"EMAIL_TIMEOUT": 10, "OUTBOX_SEND_DEADLINE": 5},
        {"OUTBOX_LEASE_SECONDS": 10},
    ],
    ids=["tls-and-ssl", "deadline-below-timeout", "lease-below-run"],
)
def test_command_refuses_a_configuration_that_cannot_work_with_status_2(
    settings, make_row, overrides
):
    for name, value in overrides.items():
        setattr(settings, name, value)
    make_row()

    with pytest.raises(CommandError) as failed:
        call_command("send_outbox")

    assert failed.value.returncode == 2
    assert OutboxMessage.objects.get().status == Status.PENDING


@pytest.mark.django_db
def test_healthy_server_gets_one_connection_and_one_auth_per_run(
    scripted, make_row, dispatch
):
    server = scripted()
    for _ in range(5):
        make_row()

    report = dispatch(transport_options=AUTH)

    assert report.sent == 5
    assert server.connections == 1
    assert sum(1 for c in server.commands if c.upper().startswith("AUTH")) == 1


@pytest.mark.django_db
def test_connection_closed_by_the_server_between_runs_of_a_batch_is_reopened(
    scripted, make_row, dispatch
):
    # The server hangs up after each message, as some relays do.
    server = scripted(replies={"END": "250 2.0.0 queued" + CLOSE})
    for _ in range(3):
        make_row()

    report = dispatch()

    assert report.sent == 3 and report.fault is None
    assert server.connections == 3


# Permanent versus temporary per-message answers (S6).


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("replies", "status", "kind", "code"),
    [
        ({"RCPT": "550 5.1.1 No such user"}, Status.FAILED, ErrorKind.PERMANENT, 550),
        (
            {"END": "554 5.7.1 Message rejected"},
            Status.FAILED,
            ErrorKind.PERMANENT,
            554,
        ),
        ({"RCPT": "450 4.2.1 Mailbox busy"}, Status.PENDING, ErrorKind.TEMPORARY, 450),
        ({"END": "451 4.3.0 Local error"}, Status.PENDING, ErrorKind.TEMPORARY, 451),
    ],
    ids=["550-rcpt", "554-data", "450-rcpt", "451-data"],
)
def test_per_message_answer_decides_the_row_and_the_run_goes_on(
    scripted, make_row, dispatch, replies, status, kind, code
):
    scripted(replies=replies)
    rows = [make_row(), make_row()]

    report = dispatch()

    assert report.fault is None
    for row in rows:
        row.refresh_from_db()
        assert row.status == status and row.attempts == 1
        assert row.last_error_kind == kind and row.last_smtp_code == code
        assert "@" not in row.last_error  # codes and replies, no addresses
    if status == Status.PENDING:
        assert all(r.next_attempt_at > timezone.now() for r in rows)


@pytest.mark.django_db
def test_retrying_row_fails_after_the_maximum_attempts(scripted, make_row, dispatch):
    scripted(replies={"RCPT": "450 4.2.1 Mailbox busy"})
    row = make_row()

    for attempt in range(1, 4):
        OutboxMessage.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
        dispatch(max_attempts=3)
        row.refresh_from_db()
        expected = Status.FAILED if attempt == 3 else Status.PENDING
        assert (row.status, row.attempts) == (expected, attempt)


@pytest.mark.django_db
def test_some_recipients_refused_is_sent_with_the_refusals_recorded(
    scripted, make_row, dispatch
):
    def rcpt(session, line):
        return "550 5.1.1 No such user" if "nobody" in line else "250 2.1.5 OK"

    server = scripted(replies={"RCPT": rcpt})
    row = make_row(to=["ann@example.test", "nobody@example.test"])

    dispatch()

    row.refresh_from_db()
    assert row.status == Status.SENT
    assert row.refused_recipients == {
        "nobody@example.test": [550, "5.1.1 No such user"]
    }
    assert len(server.mailbox) == 1


@pytest.mark.django_db
def test_backoff_grows_exponentially_within_its_cap(dispatch):
    from outbox.dispatch import Dispatcher

    dispatcher = Dispatcher(retry_base=60, retry_cap=600)

    delays = [dispatcher.backoff(n).total_seconds() for n in range(1, 7)]

    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(600, 60 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


# Timed out after the message was handed over (S7).


@pytest.mark.django_db
def test_no_reply_after_the_whole_message_is_possibly_delivered_not_failed(
    scripted, make_row, dispatch
):
    # EMAIL_TIMEOUT is 2 s; the server answers the end of DATA after 5 s.
    server = scripted(end_delay=5)
    row = make_row()

    report = dispatch(max_attempts=1)

    row.refresh_from_db()
    assert row.status == Status.PENDING
    assert row.last_error_kind == ErrorKind.UNCONFIRMED
    assert row.unconfirmed_attempts == 1 and row.attempts == 1
    assert report.retried == 1 and report.failed == 0
    [held] = server.mailbox.wait_for(1)
    assert held.message_id == row.message_id


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("verb", "kind"),
    [
        # After the whole message: it may have been delivered.
        ("END", ErrorKind.UNCONFIRMED),
        # Before: the server is broken, not the message.
        ("RCPT", ErrorKind.CONNECTION),
    ],
)
def test_a_reply_without_a_code_stops_the_run(scripted, make_row, dispatch, verb, kind):
    scripted(replies={verb: "hello there"})
    rows = [make_row() for _ in range(3)]

    report = dispatch()

    assert report.fault is not None and report.released == 2
    rows[0].refresh_from_db()
    assert rows[0].status == Status.PENDING
    assert rows[0].last_error_kind == kind


@pytest.mark.django_db
def test_a_server_that_stops_answering_is_not_reconnected_to(
    scripted, make_row, dispatch, caplog
):
    # The second message's RCPT is never answered: EMAIL_TIMEOUT (2 s) ends
    # the read, which smtplib reports as a disconnect.
    def rcpt(session, line):
        return HANG if session.messages == 1 else "250 2.1.5 OK"

    server = scripted(replies={"RCPT": rcpt})
    rows = [make_row() for _ in range(3)]

    report = dispatch()

    assert report.sent == 1 and report.retried == 1 and report.released == 1
    assert report.fault is not None and "timed out" in report.fault
    assert server.connections == 1
    assert "idle-disconnect" not in caplog.text
    rows[1].refresh_from_db()
    assert rows[1].last_error_kind == ErrorKind.CONNECTION


# One hiccup must not poison the batch (S8).


@pytest.mark.django_db
def test_stalled_first_connection_is_dropped_and_the_rest_go_out_fresh(
    scripted, make_row, dispatch
):
    def mail(session, line):
        return HANG if session.index == 1 else "250 2.1.0 OK"

    server = scripted(replies={"MAIL": mail})
    rows = [make_row() for _ in range(100)]

    first_run = dispatch(batch_size=100, transport_options={"deadline": 1})
    second_run = dispatch(batch_size=100, transport_options={"deadline": 1})

    assert first_run.retried == 1 and first_run.released == 99
    assert second_run.sent == 99 and second_run.fault is None
    assert server.connections == 2
    rows[0].refresh_from_db()
    assert "deadline of 1 s exceeded" in rows[0].last_error
    assert OutboxMessage.objects.filter(status=Status.SENT, attempts=1).count() == 99


# One bad row must not halt the queue (Q1).


@pytest.mark.django_db
def test_row_that_cannot_be_built_fails_alone_and_the_queue_goes_on(
    sink, make_row, capsys
):
    _first, poison, _third = make_row(), make_row(), make_row()
    # enqueue() refuses such a name; a row written by older code may hold one.
    OutboxMessage.objects.filter(pk=poison.pk).update(
        to=['"Eve\nBcc: x@else.test" <eve@example.test>']
    )

    call_command("send_outbox")

    assert statuses() == [("sent", 1), ("failed", 1), ("sent", 1)]
    poison.refresh_from_db()
    assert poison.last_error_kind == ErrorKind.BUILD
    assert "newline" in poison.last_error
    assert len(sink.mailbox.wait_for(2)) == 2
    assert sink.connections == 1


# Rows stuck in "sending" (Q4).


@pytest.mark.django_db
def test_row_claimed_by_a_dead_dispatcher_is_reclaimed_and_sent(
    sink, make_row, dispatch, admin_client
):
    row = make_row()
    an_hour_ago = timezone.now() - timedelta(hours=1)
    OutboxMessage.objects.filter(pk=row.pk).update(
        status=Status.SENDING,
        claim_token=uuid.uuid4(),
        claimed_by="dead-host:4242",
        claimed_at=an_hour_ago,
        lease_expires_at=an_hour_ago + timedelta(seconds=900),
    )
    untouched = make_row()

    report = dispatch()

    row.refresh_from_db()
    assert row.status == Status.SENT and row.reclaims == 1 and row.attempts == 1
    assert report.sent == 2
    [first, _second] = sink.mailbox.wait_for(2)
    assert first.message_id == row.message_id
    listing = admin_client.get("/admin/outbox/outboxmessage/?reclaimed=yes")
    assert listing.status_code == 200
    assert f"/admin/outbox/outboxmessage/{row.pk}/change/" in listing.content.decode()
    assert f"/{untouched.pk}/change/" not in listing.content.decode()


@pytest.mark.django_db
def test_row_with_a_live_lease_is_left_alone(sink, make_row, dispatch):
    row = make_row()
    OutboxMessage.objects.filter(pk=row.pk).update(
        status=Status.SENDING,
        claim_token=uuid.uuid4(),
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )

    report = dispatch()

    assert report.claimed == 0 and len(sink.mailbox) == 0


@pytest.mark.django_db
def test_outcome_is_not_written_over_a_claim_that_was_taken_over(sink, make_row):
    from outbox.claim import claim_batch

    make_row()
    [mine] = claim_batch(10, lease_seconds=900)
    # Another dispatcher reclaimed the row after our lease ran out.
    OutboxMessage.objects.filter(pk=mine.pk).update(claim_token=uuid.uuid4())

    assert mine.mark_sent() is False
    assert OutboxMessage.objects.get(pk=mine.pk).status == Status.SENDING


# Replies that are not what SMTP promises still leave a recorded outcome.


@pytest.mark.django_db
@pytest.mark.parametrize(
    "replies",
    [
        {"GREETING": "SSH-2.0-OpenSSH_9.2"},
        {"RCPT": "xyz garbage"},
        {"RCPT": "550 5.1.1 no\x00such user"},
        {"END": "451 " + "very long reply " * 500},
    ],
    ids=["not-smtp", "no-code", "nul-byte", "huge-reply"],
)
def test_odd_replies_are_recorded_and_nothing_stays_claimed(
    scripted, make_row, dispatch, replies
):
    scripted(replies=replies)
    make_row(), make_row()

    dispatch()

    assert not OutboxMessage.objects.filter(status=Status.SENDING).exists()
    for row in OutboxMessage.objects.exclude(attempts=0):
        assert row.last_error and "\x00" not in row.last_error
        assert len(row.last_error) <= 2000
        assert row.last_smtp_code is None or 100 <= row.last_smtp_code <= 599


@pytest.mark.django_db
def test_partly_refused_message_with_an_odd_reply_is_sent_once(
    scripted, make_row, dispatch
):
    def rcpt(session, line):
        return "550 5.1.1 no\x00such user" if "bad@" in line else "250 2.1.5 OK"

    server = scripted(replies={"RCPT": rcpt})
    row = make_row(to=["good@example.test", "bad@example.test"])

    dispatch()

    row.refresh_from_db()
    assert row.status == Status.SENT
    assert row.refused_recipients == {"bad@example.test": [550, "5.1.1 no such user"]}
    assert len(server.mailbox) == 1


@pytest.mark.django_db
def test_refused_sender_stops_the_run_instead_of_failing_the_queue(
    scripted, make_row, dispatch
):
    scripted(replies={"MAIL": "553 5.7.1 Sender not allowed"})
    rows = [make_row() for _ in range(5)]

    report = dispatch()

    assert report.fault and report.failed == 0
    assert statuses() == [("pending", 1)] + [("pending", 0)] * 4
    rows[0].refresh_from_db()
    assert rows[0].last_error_kind == ErrorKind.SENDER


@pytest.mark.django_db
def test_421_at_the_end_of_data_is_an_answer_not_a_possible_delivery(
    scripted, make_row, dispatch
):
    scripted(replies={"END": "421 4.7.0 Try again later" + CLOSE})
    row = make_row()

    for _ in range(2):
        OutboxMessage.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
        dispatch(max_attempts=2)

    row.refresh_from_db()
    assert row.last_error_kind == ErrorKind.THROTTLED and row.last_smtp_code == 421
    assert row.unconfirmed_attempts == 0
    assert (row.status, row.attempts) == (Status.FAILED, 2)


@pytest.mark.django_db
def test_server_that_never_confirms_cannot_keep_a_row_forever(
    scripted, make_row, dispatch
):
    scripted(replies={"END": CLOSE})
    row = make_row()

    for _ in range(10):
        OutboxMessage.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
        dispatch(max_attempts=2)

    row.refresh_from_db()
    # One unconfirmed attempt never fails a row; a second allowance bounds it.
    assert (row.status, row.attempts, row.unconfirmed_attempts) == (
        Status.FAILED,
        4,
        4,
    )


@pytest.mark.django_db
def test_run_budget_longer_than_the_lease_is_refused_before_claiming(
    make_row, settings
):
    settings.OUTBOX_LEASE_SECONDS = 60
    make_row()

    with pytest.raises(CommandError) as refused:
        call_command("send_outbox", "--max-seconds", "600")

    assert refused.value.returncode == 2
    assert "OUTBOX_LEASE_SECONDS" in str(refused.value)
    assert OutboxMessage.objects.get().status == Status.PENDING
