"""Sign-ups that race, and what reaches the mail server (cases U2 and U4)."""

import threading

import pytest

from outbox.models import OutboxMessage
from tests.http_client import Browser
from users.models import User

PASSWORD = "a sturdy passphrase 42"


def fields(email):
    return {"email": email, "name": "Ann", "password1": PASSWORD, "password2": PASSWORD}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("second_spelling", ["race@example.test", "RACE@Example.TEST"])
def test_two_signups_of_one_address_at_once_make_one_user_and_one_row(
    live_server, second_spelling
):
    browsers = [Browser(live_server.url), Browser(live_server.url)]
    for browser in browsers:
        browser.get("/accounts/signup/")  # the CSRF cookie, before the race
    start = threading.Barrier(2)
    pages = {}

    def sign_up(index, email):
        start.wait(10)
        pages[index] = browsers[index].submit("/accounts/signup/", fields(email))

    threads = [
        threading.Thread(target=sign_up, args=(0, "race@example.test")),
        threading.Thread(target=sign_up, args=(1, second_spelling)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    statuses = sorted(page.status for page in pages.values())
    assert statuses == [200, 400]
    loser = next(page for page in pages.values() if page.status == 400)
    assert "already exists" in loser.text
    assert User.objects.count() == 1 and OutboxMessage.objects.count() == 1


@pytest.mark.django_db
def test_activation_mail_has_one_recipient_no_bcc_and_a_one_line_subject(client, sink):
    from django.core.management import call_command

    # The subject template ends in a newline, as editors like to leave them.
    client.post("/accounts/signup/", fields("uma@example.test"))

    call_command("send_outbox")

    [received] = sink.mailbox.wait_for(1)
    assert received.recipients == ["uma@example.test"]
    assert "Bcc" not in received.message
    assert received.message["Subject"] == "Activate your Panacare account"
    assert received.message["To"] == "uma@example.test"
