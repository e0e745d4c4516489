"""Activation links, resends and login before activation (case U3)."""

from datetime import datetime, timedelta

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from outbox.models import OutboxMessage
from users.models import User
from users.services import register_user
from users.tokens import ActivationTokenGenerator, activation_tokens

PASSWORD = "a sturdy passphrase 42"


@pytest.fixture
def user(db):
    return register_user(email="ann@example.test", name="Ann", password=PASSWORD)


def link(user, token=None):
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return f"/accounts/activate/{uid}/{token or activation_tokens.make_token(user)}/"


@pytest.fixture
def days_later(monkeypatch):
    def travel(days):
        later = datetime.now() + timedelta(days=days)
        monkeypatch.setattr(ActivationTokenGenerator, "_now", lambda self: later)

    return travel


def test_first_open_activates_and_second_says_already_active(client, user):
    url = link(user)

    first = client.get(url)
    second = client.get(url)

    assert first.status_code == 200 and b"Your account is active" in first.content
    assert second.status_code == 200 and b"already active" in second.content
    user.refresh_from_db()
    assert user.is_active
    assert "_auth_user_id" not in client.session


def test_expired_link_says_so_and_offers_a_new_one(client, user, days_later, settings):
    url = link(user)
    days_later(4)
    settings.ACTIVATION_RESEND_INTERVAL = 0

    page = client.get(url)

    assert page.status_code == 400
    assert (
        b"expired" in page.content
        and b'action="/accounts/activation/resend/"' in page.content
    )
    assert b'value="ann@example.test"' in page.content
    client.post("/accounts/activation/resend/", {"email": "ann@example.test"})
    assert OutboxMessage.objects.count() == 2
    user.refresh_from_db()
    assert not user.is_active


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-1] + ("0" if token[-1] != "0" else "1"),
        lambda token: "zzzzzz-" + token.split("-")[1],
        lambda token: token + "x",
        lambda token: "not-a-token",
    ],
    ids=["hash-changed", "time-changed", "longer", "garbage"],
)
def test_tampered_link_is_rejected_and_the_user_stays_inactive(client, user, tamper):
    page = client.get(link(user, tamper(activation_tokens.make_token(user))))

    assert page.status_code == 400 and b"not valid" in page.content
    user.refresh_from_db()
    assert not user.is_active


def test_password_reset_token_is_no_activation_token(client, user):
    reset_token = default_token_generator.make_token(user)

    page = client.get(link(user, reset_token))

    assert page.status_code == 400
    user.refresh_from_db()
    assert not user.is_active


def test_link_for_another_user_id_is_rejected(client, user):
    other = register_user(email="bob@example.test", name="Bob", password=PASSWORD)
    uid = urlsafe_base64_encode(force_bytes(other.pk))

    page = client.get(f"/accounts/activate/{uid}/{activation_tokens.make_token(user)}/")

    assert page.status_code == 400
    assert not User.objects.filter(is_active=True).exists()


def test_login_before_activation_is_refused_with_a_way_to_a_new_link(client, user):
    page = client.post(
        "/accounts/login/", {"username": "ann@example.test", "password": PASSWORD}
    )

    text = page.content.decode()
    assert "not active yet" in text and "/accounts/activation/resend/" in text
    assert "_auth_user_id" not in client.session


def test_login_with_a_wrong_password_does_not_tell_the_account_is_inactive(
    client, user
):
    page = client.post(
        "/accounts/login/", {"username": "ann@example.test", "password": "wrong one"}
    )

    assert "not active yet" not in page.content.decode()


# Resending.

RESEND = "/accounts/activation/resend/"


@pytest.mark.parametrize("address", ["ann@example.test", "nobody@example.test"])
def test_resend_answers_the_same_whether_or_not_the_address_exists(
    client, user, address, settings
):
    settings.ACTIVATION_RESEND_INTERVAL = 0

    page = client.post(RESEND, {"email": address})

    assert page.status_code == 200
    assert b"If that address belongs to an account" in page.content


def test_resend_for_an_active_account_writes_nothing(client, user, settings):
    settings.ACTIVATION_RESEND_INTERVAL = 0
    user.activate()

    client.post(RESEND, {"email": "ANN@example.test"})

    assert OutboxMessage.objects.count() == 1


def test_resend_within_the_interval_writes_nothing(client, user):
    for _ in range(3):
        client.post(RESEND, {"email": "ann@example.test"})

    assert OutboxMessage.objects.count() == 1


def test_resend_after_the_interval_writes_one_new_row(client, user, settings):
    settings.ACTIVATION_RESEND_INTERVAL = 0

    client.post(RESEND, {"email": "Ann@Example.test"})

    assert OutboxMessage.objects.count() == 2
    newest = OutboxMessage.objects.latest("id")
    assert newest.to == ["ann@example.test"] and "activate" in newest.body


def test_new_link_from_a_resend_activates(client, user, settings):
    settings.ACTIVATION_RESEND_INTERVAL = 0
    client.post(RESEND, {"email": "ann@example.test"})
    body = OutboxMessage.objects.latest("id").body
    path = "/" + body.split("http://", 1)[1].split("/", 1)[1].split()[0]

    page = client.get(path)

    assert page.status_code == 200
    user.refresh_from_db()
    assert user.is_active


# Password reset mail is bounded like activation mail.

RESET = "/accounts/password/reset/"


def test_password_reset_sends_one_mail_per_account_per_interval(client, user):
    user.activate()

    for _ in range(5):
        page = client.post(RESET, {"email": "ann@example.test"})
        assert page.status_code == 302

    resets = OutboxMessage.objects.filter(subject__icontains="reset")
    assert resets.count() == 1
    assert resets.get().priority == 0  # account mail goes first


@pytest.mark.django_db
def test_password_reset_is_rate_limited_per_client(client, settings):
    from django.core.cache import cache

    cache.clear()
    settings.RESET_RATE_LIMIT = "2/h"

    statuses = [
        client.post(RESET, {"email": f"n{n}@example.test"}).status_code
        for n in range(3)
    ]

    assert statuses == [302, 302, 429]
    cache.clear()
