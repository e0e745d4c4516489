"""The SMTP backend's hard deadline against servers that stall (cases S2-S4)."""

import socket
import threading
import time

import pytest
from django.core.mail import EmailMessage
from django.core.mail.utils import DNS_NAME

from outbox.api import enqueue
from outbox.emails import render
from outbox.exceptions import DeadlineExceeded
from outbox.models import ErrorKind, Status
from outbox.smtp import DeadlineSMTPBackend, Hooks
from tests.smtp_servers import HANG


def envelope():
    return render(EmailMessage("Hi", "Body", "a@panacare.test", ["b@example.test"]))


@pytest.fixture
def stall():
    """Make a function hang until the test ends, then behave as before.

    The helper thread the backend abandons returns the real answer when the
    test is over, so nothing bogus lands in Django's host-name cache.
    """
    released = threading.Event()

    def make(real):
        def stalled(*args, **kwargs):
            released.wait(60)
            return real(*args, **kwargs)

        return stalled

    yield make
    released.set()
    for thread in threading.enumerate():
        if thread.name.startswith("outbox-") and thread.name != "outbox-watchdog":
            thread.join(timeout=10)


@pytest.fixture
def fresh_fqdn_cache():
    """Forget Django's cached host name, so the next send looks it up again."""
    if hasattr(DNS_NAME, "_fqdn"):
        del DNS_NAME._fqdn
    yield
    if hasattr(DNS_NAME, "_fqdn"):
        del DNS_NAME._fqdn


@pytest.mark.django_db
def test_silent_server_ends_the_attempt_at_the_socket_timeout(
    scripted, make_row, dispatch
):
    silent = scripted(silent=True)
    row = make_row()

    started = time.monotonic()
    report = dispatch()
    elapsed = time.monotonic() - started

    row.refresh_from_db()
    assert row.status == Status.PENDING and row.attempts == 1
    assert row.next_attempt_at > row.updated_at
    assert "timed out" in row.last_error
    assert row.last_error_kind == ErrorKind.CONNECTION
    assert report.fault and report.retried == 1
    # EMAIL_TIMEOUT is 2 s and the deadline 5 s: the socket timeout fires.
    assert 2 <= elapsed < 5
    assert silent.connections == 1


@pytest.mark.django_db
def test_dripping_server_is_cut_off_at_the_deadline(scripted, make_row, dispatch):
    # One byte every 0.5 s never trips a 2 s socket timeout.
    drip = scripted(drip=0.5)
    row = make_row()

    started = time.monotonic()
    dispatch()
    elapsed = time.monotonic() - started

    row.refresh_from_db()
    assert row.status == Status.PENDING and row.attempts == 1
    assert "deadline of 5 s exceeded" in row.last_error
    assert 5 <= elapsed <= 6
    assert drip.connections == 1


def test_aborted_connection_is_never_reused(scripted):
    drip = scripted(drip=0.5)
    backend = DeadlineSMTPBackend(timeout=2, deadline=1)

    with pytest.raises(DeadlineExceeded):
        backend.deliver(envelope())
    assert backend.connection is None

    with pytest.raises(DeadlineExceeded):
        backend.deliver(envelope())
    assert drip.connections == 2


def test_hanging_host_lookup_ends_at_the_deadline(scripted, monkeypatch, stall):
    server = scripted()
    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", stall(real_getaddrinfo))
    backend = DeadlineSMTPBackend(timeout=2, deadline=1)

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="resolving the SMTP host"):
        backend.deliver(envelope())
    assert time.monotonic() - started < 2
    assert backend.connection is None

    monkeypatch.setattr(socket, "getaddrinfo", real_getaddrinfo)
    assert backend.deliver(envelope()) == {}
    assert len(server.mailbox) == 1


def test_hanging_local_host_name_lookup_ends_at_the_deadline(
    scripted, monkeypatch, fresh_fqdn_cache, stall
):
    server = scripted()
    monkeypatch.setattr(socket, "getfqdn", stall(socket.getfqdn))
    backend = DeadlineSMTPBackend(timeout=2, deadline=1)

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="local host name"):
        backend.deliver(envelope())
    assert time.monotonic() - started < 2
    assert server.connections == 0


@pytest.mark.django_db
def test_row_stuck_on_a_lookup_is_retried_then_sent_once_it_works(
    scripted, monkeypatch, make_row, dispatch, fresh_fqdn_cache, stall
):
    server = scripted()
    row = make_row()
    real_getfqdn = socket.getfqdn
    monkeypatch.setattr(socket, "getfqdn", stall(real_getfqdn))

    dispatch(transport_options={"deadline": 1})

    row.refresh_from_db()
    assert row.status == Status.PENDING and row.claim_token is None
    assert "local host name" in row.last_error

    monkeypatch.setattr(socket, "getfqdn", real_getfqdn)
    row.next_attempt_at = row.created_at
    row.save(update_fields=["next_attempt_at"])
    dispatch(transport_options={"deadline": 1})

    row.refresh_from_db()
    assert row.status == Status.SENT and row.attempts == 2
    assert len(server.mailbox) == 1


def test_message_ids_need_no_host_name_lookup(monkeypatch, fresh_fqdn_cache, db):
    calls = []

    def counting_getfqdn(*args):
        calls.append(args)
        return "x"

    monkeypatch.setattr(socket, "getfqdn", counting_getfqdn)

    row = enqueue(EmailMessage("S", "B", "a@panacare.test", ["b@example.test"]))

    assert calls == []
    assert row.message_id.endswith("@panacare.test>")


def test_tls_handshake_that_never_completes_ends_at_the_deadline(scripted):
    # Implicit TLS (port 465 style) against a server that never answers.
    scripted(silent=True)
    backend = DeadlineSMTPBackend(use_ssl=True, timeout=10, deadline=1)

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="connecting"):
        backend.deliver(envelope())

    assert time.monotonic() - started < 2
    assert backend.connection is None


def test_starttls_that_stalls_after_its_go_ahead_ends_at_the_deadline(scripted):
    scripted(
        replies={
            "EHLO": "250-scripted.test\r\n250-STARTTLS\r\n250 8BITMIME",
            "STARTTLS": "220 2.0.0 Ready to start TLS" + HANG,
        }
    )
    backend = DeadlineSMTPBackend(use_tls=True, timeout=10, deadline=1)

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="starting TLS"):
        backend.deliver(envelope())

    assert time.monotonic() - started < 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body_size", "kind", "unconfirmed"),
    [(4_000_000, ErrorKind.CONNECTION, 0), (100, ErrorKind.UNCONFIRMED, 1)],
    ids=["closed-before-the-end", "closed-after-the-end"],
)
def test_server_closing_during_data_is_unconfirmed_only_if_it_got_the_end(
    scripted, make_row, dispatch, body_size, kind, unconfirmed
):
    # The server reads one line of the message and hangs up. A big message
    # cannot all be written before that; a small one sits whole in the
    # socket buffers, so the client cannot tell it was not read.
    scripted(close_in_data=True)
    row = make_row(body="line of text\n" * (body_size // 13))

    report = dispatch()

    row.refresh_from_db()
    assert row.status == Status.PENDING and row.attempts == 1
    assert row.last_error_kind == kind
    assert row.unconfirmed_attempts == unconfirmed
    assert report.fault


def test_a_hook_that_fails_mid_conversation_leaves_no_session_behind(sink):
    backend = DeadlineSMTPBackend(timeout=2, deadline=5)
    message = EmailMessage("S", "B", "a@example.test", ["b@example.test"])

    def broken() -> None:
        raise RuntimeError("a fault of the caller's own")

    with pytest.raises(RuntimeError):
        backend.deliver(render(message), Hooks(meanwhile=broken))
    assert backend.connection is None

    backend.deliver(render(message))
    backend.close()
    assert sink.connections == 2
    assert len(sink.mailbox) == 1
