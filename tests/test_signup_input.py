"""Whatever is typed into the sign-up form gets an answer, never a 500, and an
accepted address is one the dispatcher can deliver to."""

import pytest

from outbox.emails import render, to_email_message
from outbox.models import OutboxMessage
from users.models import User

PASSWORD = "a sturdy passphrase 42"


def post(client, email, **fields):
    data = {"email": email, "name": "Ann", "password1": PASSWORD, "password2": PASSWORD}
    data.update(fields)
    return client.post("/accounts/signup/", data)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "email",
    [
        "a@" + "İ" * 63 + "." + "İ" * 63 + ".com",  # grows when lowercased
        "a@\ufffd.com",
        "b@x\u2028y.com",
        "c@\u00ad\u00ad.com",
        "d@x\u200by.com",
        '"a\x01b"@example.com',
        "jörg@example.com",
        "x" * 250 + "@example.com",
    ],
    ids=[
        "grows-past-254",
        "replacement-char",
        "line-separator",
        "soft-hyphens",
        "zero-width-space",
        "control-char",
        "non-ascii-local-part",
        "too-long",
    ],
)
def test_address_mail_cannot_reach_is_a_form_error(client, email):
    response = post(client, email)

    assert response.status_code == 400
    assert User.objects.count() == 0 and OutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_full_width_letters_fold_into_the_one_plain_address(client):
    post(client, "n@example.com")

    response = post(client, "n@ｅｘａｍｐｌｅ.com")

    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_internationalised_domain_is_accepted_and_mail_goes_to_punycode(client):
    response = post(client, "ann@bücher.example")

    assert response.status_code == 302
    row = OutboxMessage.objects.get()
    envelope = render(to_email_message(row))
    assert envelope.recipients == ["ann@xn--bcher-kva.example"]


@pytest.mark.django_db
def test_non_ascii_local_part_says_why(client):
    response = post(client, "jörg@example.com")

    assert "only plain letters" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("", "application/x-www-form-urlencoded"),
        ('{"email": "a@example.com"}', "application/json"),
        ("email=a@example.com", "text/plain"),
    ],
    ids=["empty", "json", "text"],
)
def test_post_without_form_fields_is_a_400(client, data, content_type):
    response = client.post("/accounts/signup/", data, content_type=content_type)

    assert response.status_code == 400
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_head_of_the_signup_page_is_allowed(client):
    assert client.head("/accounts/signup/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("m1@straße.de", "m1@strasse.de"),
        ("m2@bücher.de", "m2@xn--bcher-kva.de"),
        ('"m3"@example.com', "m3@example.com"),
        ("M4@Example.com", "m4@example.COM"),
    ],
    ids=["idna-mapping", "unicode-and-punycode", "quoted-local-part", "case"],
)
def test_two_spellings_of_one_mailbox_are_one_account(client, first, second):
    assert post(client, first).status_code == 302

    response = post(client, second)

    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert User.objects.count() == 1 and OutboxMessage.objects.count() == 1


@pytest.mark.django_db
def test_login_and_resend_accept_any_spelling_of_the_mailbox(client, settings):
    settings.ACTIVATION_RESEND_INTERVAL = 0
    post(client, "m5@bücher.example")

    client.post("/accounts/activation/resend/", {"email": "M5@xn--bcher-kva.example"})
    User.objects.update(is_active=True)
    page = client.post(
        "/accounts/login/",
        {"username": "m5@XN--BCHER-KVA.example", "password": PASSWORD},
    )

    assert OutboxMessage.objects.count() == 2
    assert page.status_code == 302
