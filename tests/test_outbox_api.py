"""The outbox's public API and its email backend."""

import email
import email.message

import pytest
from django.core import mail
from django.core.mail import BadHeaderError, EmailMultiAlternatives, send_mail
from django.db import transaction

from outbox.api import enqueue
from outbox.emails import render, to_email_message
from outbox.exceptions import InvalidMessage
from outbox.models import OutboxMessage, Status


@pytest.mark.django_db
def test_send_mail_inside_a_rolled_back_block_leaves_no_row():
    with pytest.raises(RuntimeError), transaction.atomic():
        send_mail("Hello", "Body", None, ["ann@example.test"])
        assert OutboxMessage.objects.count() == 1
        raise RuntimeError("roll back")

    assert OutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_send_mail_queues_a_row_and_opens_no_connection(scripted):
    silent = scripted(silent=True)

    sent = send_mail("Hello", "Body", None, ["ann@example.test", "bob@example.test"])

    assert sent == 1
    row = OutboxMessage.objects.get()
    assert row.status == Status.PENDING
    assert row.to == ["ann@example.test", "bob@example.test"]
    assert silent.connections == 0


@pytest.mark.django_db
def test_mail_admins_goes_through_the_outbox(settings):
    settings.ADMINS = [("Ops", "ops@example.test")]

    mail.mail_admins("Disk full", "Details", html_message="<p>Details</p>")

    row = OutboxMessage.objects.get()
    assert row.to == ["ops@example.test"]
    assert row.alternatives == [{"content": "<p>Details</p>", "mimetype": "text/html"}]


@pytest.mark.django_db
def test_a_row_rebuilds_the_same_email_on_every_attempt():
    original = EmailMultiAlternatives(
        subject="Grüße",
        body="Plain body",
        from_email="Ops <ops@example.test>",
        to=["Ann <ann@example.test>"],
        cc=["cc@example.test"],
        bcc=["bcc@example.test"],
        reply_to=["reply@example.test"],
        headers={"X-Tag": "signup"},
    )
    original.attach_alternative("<p>HTML body</p>", "text/html")
    original.attach("notes.txt", "some notes", "text/plain")
    original.attach("blob.bin", b"\x00\x01\x02", "application/octet-stream")

    row = enqueue(original)
    first = render(to_email_message(row))
    second = render(to_email_message(OutboxMessage.objects.get(pk=row.pk)))

    assert (
        first.recipients
        == second.recipients
        == [
            "Ann <ann@example.test>",
            "cc@example.test",
            "bcc@example.test",
        ]
    )
    parsed = to_email_message(row).message()
    assert parsed["Message-ID"] == row.message_id
    assert parsed["Date"] == row.headers["Date"]
    assert parsed["X-Tag"] == "signup"
    assert "Bcc" not in parsed
    # MIME boundaries are random per rendering; everything else is fixed.
    assert first.data.count(b"notes.txt") == second.data.count(b"notes.txt") == 1
    assert b"AAEC" in first.data  # base64 of the binary attachment


@pytest.mark.django_db
def test_message_id_domain_comes_from_the_sender_not_from_dns():
    row = enqueue(
        EmailMultiAlternatives("S", "B", "x@mail.panacare.test", ["a@example.test"])
    )

    assert row.message_id.endswith("@mail.panacare.test>")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field",
    [
        {"subject": "Hello\nBcc: victim@example.test"},
        {"to": ["ann@example.test\r\nBcc: victim@example.test"]},
        {"headers": {"X-Note": "one\ntwo"}},
        {"headers": {"X-Note": "one\x0btwo"}},
        {"headers": {"X-Note": "one\u2028two"}},
        {"headers": {"X-Note": "nul\x00byte"}},
        {"headers": {"X Bad": "1"}},
        {"headers": {"X-Bad:": "1"}},
    ],
    ids=[
        "subject-lf",
        "address-crlf",
        "value-lf",
        "value-vertical-tab",
        "value-line-separator",
        "value-nul",
        "name-space",
        "name-colon",
    ],
)
def test_enqueue_refuses_headers_that_could_break_the_message(field):
    options = {"subject": "Hi", "body": "B", "to": ["ann@example.test"], **field}

    with pytest.raises(BadHeaderError):
        enqueue(EmailMultiAlternatives(**options))

    assert OutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_enqueue_refuses_a_message_without_recipients():
    with pytest.raises(InvalidMessage):
        enqueue(EmailMultiAlternatives("S", "B", "x@example.test", []))


def _message(**options):
    fields = {"subject": "Hi", "body": "B", "to": ["ann@example.test"], **options}
    alternatives = fields.pop("alternatives", [])
    message = EmailMultiAlternatives(**fields)
    message.alternatives = alternatives
    return message


@pytest.mark.django_db
@pytest.mark.parametrize(
    "options",
    [
        {"body": "nul\x00byte"},
        {"body": b"bytes"},
        {"alternatives": [(b"<p>bytes</p>", "text/html")]},
        {"alternatives": [("<p>nul\x00</p>", "text/html")]},
        {"body": "a" * 600 + "\u2028" + "b" * 600},
        {"body": "a" * 600 + "\x0c" + "b" * 600},
        {"headers": {"X-Long": "v" * 2000}},
        {"headers": {"Message-ID": "<" + "m" * 300 + "@example.test>"}},
    ],
    ids=[
        "body-nul",
        "body-bytes",
        "alternative-bytes",
        "alternative-nul",
        "line-separator-long-line",
        "form-feed-long-line",
        "unfoldable-header",
        "long-message-id",
    ],
)
def test_enqueue_refuses_what_no_server_could_take(options):
    with pytest.raises(InvalidMessage):
        enqueue(_message(**options))

    assert OutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_a_long_line_breakable_by_django_is_queued_and_goes_out_short():
    row = enqueue(_message(body="word " * 400))

    data = render(to_email_message(row)).data

    assert max(len(line) for line in data.split(b"\r\n")) <= 998


@pytest.mark.django_db
def test_a_mime_part_with_8bit_text_and_a_forwarded_message_survive_the_queue():
    from django.core.mail import EmailMessage
    from django.core.mail.message import SafeMIMEText

    message = _message()
    message.attach(SafeMIMEText("héllo wörld\n", "plain", "utf-8"))
    forwarded = EmailMessage("Fwd", "inner body", "a@example.test", ["b@example.test"])
    message.attach("fwd.eml", forwarded, "message/rfc822")

    row = enqueue(message)
    sent = email.message_from_bytes(render(to_email_message(row)).data)

    parts = list(sent.walk())
    texts = []
    for part in parts:
        payload = part.get_payload(decode=True)
        if part.get_content_type() == "text/plain" and isinstance(payload, bytes):
            texts.append(payload.decode().replace("\r\n", "\n"))
    assert "héllo wörld\n" in texts
    inner = [p for p in parts if p.get_content_type() == "message/rfc822"]
    assert inner
    forwarded_part = inner[0].get_payload(0)
    assert isinstance(forwarded_part, email.message.Message)
    assert forwarded_part["Subject"] == "Fwd"
    assert "inner body" in texts
    # The stored part is written back byte for byte.
    assert "héllo wörld".encode() in render(to_email_message(row)).data
    assert b"object at 0x" not in render(to_email_message(row)).data
