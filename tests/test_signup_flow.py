"""Sign-up to inbox: the whole path through real HTTP, the outbox and SMTP."""

import re
import time

import pytest
from django.core.management import call_command
from django.db import transaction

from outbox.models import OutboxMessage, Status
from tests.http_client import Browser
from users.models import User
from users.services import register_user

PASSWORD = "a sturdy passphrase 42"


def signup_fields(email: str, name: str = "Ann Example") -> dict[str, str]:
    return {"email": email, "name": name, "password1": PASSWORD, "password2": PASSWORD}


@pytest.mark.django_db(transaction=True)
def test_signup_mail_activates_the_account_and_login_then_works(live_server, sink):
    browser = Browser(live_server.url)

    page = browser.submit("/accounts/signup/", signup_fields("Ann@Example.test"))
    assert page.status == 200
    assert page.url.endswith("/accounts/signup/done/")
    assert "Check your inbox" in page.text
    user = User.objects.get()
    assert not user.is_active
    row = OutboxMessage.objects.get()
    assert row.status == Status.PENDING
    assert sink.connections == 0

    call_command("send_outbox")

    [received] = sink.mailbox.wait_for(1)
    assert received.recipients == ["Ann@example.test"]
    assert received.message_id == row.message_id
    text = received.message.get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"http://\S+/accounts/activate/\S+/", text)
    assert link, text
    row.refresh_from_db()
    assert row.status == Status.SENT and row.attempts == 1

    # The link was built from SITE_URL; follow it on the live server.
    path = "/" + link.group(0).split("/", 3)[3]
    page = browser.get(path)
    assert page.status == 200 and "Your account is active" in page.text
    user.refresh_from_db()
    assert user.is_active

    page = browser.submit(
        "/accounts/login/", {"username": "ann@EXAMPLE.test", "password": PASSWORD}
    )
    assert page.status == 200
    assert "You are logged in as" in page.text and "Ann@example.test" in page.text


@pytest.mark.django_db(transaction=True)
def test_login_is_refused_before_activation(live_server):
    browser = Browser(live_server.url)
    browser.submit("/accounts/signup/", signup_fields("bob@example.test"))

    page = browser.submit(
        "/accounts/login/", {"username": "bob@example.test", "password": PASSWORD}
    )

    assert "/accounts/login/" in page.url
    assert "You are logged in" not in page.text


@pytest.mark.django_db(transaction=True)
def test_signup_while_smtp_hangs_returns_without_touching_smtp(
    live_server, scripted, settings
):
    # The configured server accepts TCP connections and never says a word.
    silent = scripted(silent=True)
    browser = Browser(live_server.url)

    started = time.monotonic()
    page = browser.submit("/accounts/signup/", signup_fields("cat@example.test"))
    elapsed = time.monotonic() - started

    assert page.status == 200 and page.url.endswith("/signup/done/")
    # Not a speed goal: any SMTP conversation would have waited at least
    # EMAIL_TIMEOUT on this server.
    assert elapsed < settings.EMAIL_TIMEOUT
    assert silent.connections == 0
    assert not User.objects.get().is_active
    assert OutboxMessage.objects.filter(status=Status.PENDING).count() == 1


@pytest.mark.django_db(transaction=True)
def test_signup_that_rolls_back_after_queueing_leaves_nothing_behind(sink):
    with pytest.raises(RuntimeError), transaction.atomic():
        register_user(email="dan@example.test", name="Dan", password=PASSWORD)
        assert OutboxMessage.objects.count() == 1
        raise RuntimeError("the rest of the sign-up failed")

    call_command("send_outbox")

    assert User.objects.count() == 0
    assert OutboxMessage.objects.count() == 0
    assert sink.connections == 0 and len(sink.mailbox) == 0


@pytest.mark.django_db(transaction=True)
def test_signup_whose_mail_cannot_be_queued_creates_no_user(settings):
    # A sender address with a line break: the outbox refuses the message.
    settings.DEFAULT_FROM_EMAIL = "Panacare <no-reply@panacare.test>\nBcc: x@y.test"

    with pytest.raises(ValueError):
        register_user(email="eve@example.test", name="Eve", password=PASSWORD)

    assert User.objects.count() == 0 and OutboxMessage.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_committed_signup_writes_exactly_one_outbox_row():
    user = register_user(email="fay@example.test", name="Fay", password=PASSWORD)

    [row] = OutboxMessage.objects.all()
    assert row.to == [user.email]
    assert row.status == Status.PENDING and row.attempts == 0


@pytest.mark.django_db
def test_second_signup_with_other_letter_case_gets_a_form_error(client):
    client.post("/accounts/signup/", signup_fields("gus@example.test"))

    response = client.post("/accounts/signup/", signup_fields("GUS@Example.TEST"))

    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert User.objects.count() == 1 and OutboxMessage.objects.count() == 1


@pytest.mark.django_db
def test_database_refuses_a_second_address_differing_only_in_case():
    User.objects.create_user(email="hal@example.test", password=PASSWORD)

    with pytest.raises(Exception) as caught, transaction.atomic():
        User.objects.create_user(email="HAL@example.test", password=PASSWORD)

    assert "unique" in str(caught.value).lower()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name",
    [
        "Eve\nBcc: someone@else.test",
        "Eve\rBcc: someone@else.test",
        "A\x01B",
        "Tab\there",
        "Del\x7f",
        "C1\x85control",
        "Line\u2028separator",
    ],
)
def test_name_with_a_line_break_or_control_character_is_a_form_error(client, name):
    response = client.post(
        "/accounts/signup/", signup_fields("ivy@example.test", name=name)
    )

    assert response.status_code == 400
    assert "control characters are not allowed" in response.content.decode()
    assert User.objects.count() == 0 and OutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_api_refuses_a_control_character_in_the_name(client):
    response = client.post(
        "/api/signup/",
        {"email": "ivy@example.test", "name": "A\x01B", "password": PASSWORD},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert response.json()["errors"]["name"][0]["code"] == "control_character"
    assert User.objects.count() == 0 and OutboxMessage.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_password_reset_mail_goes_through_the_outbox_and_its_link_works(
    live_server, sink, settings
):
    settings.SITE_URL = live_server.url
    User.objects.create_user(
        email="jo@example.test", name="Jo", password=PASSWORD, is_active=True
    )
    browser = Browser(live_server.url)

    page = browser.submit("/accounts/password/reset/", {"email": "JO@example.test"})
    assert page.status == 200 and "Check your inbox" in page.text
    assert sink.connections == 0

    call_command("send_outbox")
    [received] = sink.mailbox.wait_for(1)
    text = received.message.get_body(preferencelist=("plain",)).get_content()
    link = re.search(
        re.escape(live_server.url) + r"/accounts/password/reset/\S+/", text
    )
    assert link, text

    new_password = "another sturdy passphrase 43"
    form_page = browser.get(link.group(0))
    page = browser.submit(
        form_page.url.removeprefix(live_server.url),
        {"new_password1": new_password, "new_password2": new_password},
    )
    assert "Your password has been changed" in page.text
    page = browser.submit(
        "/accounts/login/", {"username": "jo@example.test", "password": new_password}
    )
    assert "You are logged in as" in page.text


@pytest.mark.django_db
def test_password_reset_for_an_unknown_address_looks_the_same_and_queues_nothing(
    client,
):
    response = client.post(
        "/accounts/password/reset/", {"email": "nobody@example.test"}
    )

    assert response.status_code == 302
    assert response["Location"].endswith("/accounts/password/reset/sent/")
    assert OutboxMessage.objects.count() == 0
