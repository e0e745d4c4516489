"""The JSON API for app clients."""

import json

import pytest
from django.core.cache import cache

from outbox.models import OutboxMessage
from users.models import User

SIGNUP = "/api/signup/"
RESEND = "/api/activation/resend/"
GOOD = {"email": "ann@example.test", "name": "Ann", "password": "a sturdy pass 42"}


def post_json(client, url, payload, content_type="application/json"):
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    return client.post(url, body, content_type=content_type)


@pytest.mark.django_db
def test_signup_creates_an_inactive_user_and_one_row(client):
    response = post_json(client, SIGNUP, GOOD)

    assert response.status_code == 201
    assert "detail" in response.json()
    user = User.objects.get()
    assert not user.is_active and OutboxMessage.objects.count() == 1


@pytest.mark.django_db
def test_field_errors_have_a_stable_shape(client):
    response = post_json(client, SIGNUP, {"email": "nope", "name": "", "password": "1"})

    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "Invalid input."
    assert set(body["errors"]) == {"email", "name", "password"}
    for problems in body["errors"].values():
        assert problems and all(set(p) == {"message", "code"} for p in problems)
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_taken_address_in_other_case_is_a_400_with_the_same_shape(client):
    post_json(client, SIGNUP, GOOD)

    response = post_json(client, SIGNUP, {**GOOD, "email": "ANN@example.TEST"})

    assert response.status_code == 400
    assert response.json()["errors"]["email"][0]["code"] == "email_taken"
    assert User.objects.count() == 1 and OutboxMessage.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "content_type", "status"),
    [
        (GOOD, "application/x-www-form-urlencoded", 415),
        ("email=a", "text/plain", 415),
        ("{not json", "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('"text"', "application/json", 400),
        ({**GOOD, "email": ["a@example.test"]}, "application/json", 400),
        ({**GOOD, "password": None}, "application/json", 400),
        ({**GOOD, "name": 12}, "application/json", 400),
        ({**GOOD, "name": "Eve\nBcc: x@else.test"}, "application/json", 400),
    ],
    ids=[
        "form-encoded",
        "plain-text",
        "broken-json",
        "not-utf8",
        "array",
        "string",
        "list-value",
        "null-value",
        "number-value",
        "line-break",
    ],
)
def test_bad_bodies_get_a_4xx_and_write_nothing(client, payload, content_type, status):
    response = post_json(client, SIGNUP, payload, content_type)

    assert response.status_code == status
    assert "detail" in response.json()
    assert User.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_other_methods_get_405(client, method):
    response = getattr(client, method)(SIGNUP)

    assert response.status_code == 405 and response["Allow"] == "POST"


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["ann@example.test", "nobody@example.test"])
def test_resend_answers_202_whoever_asks(client, email, settings):
    settings.ACTIVATION_RESEND_INTERVAL = 0
    post_json(client, SIGNUP, GOOD)

    response = post_json(client, RESEND, {"email": email})

    assert response.status_code == 202
    expected_rows = 2 if email == GOOD["email"] else 1
    assert OutboxMessage.objects.count() == expected_rows


@pytest.mark.django_db
def test_resend_with_a_malformed_address_is_a_400(client):
    response = post_json(client, RESEND, {"email": "not an address"})

    assert response.status_code == 400 and "email" in response.json()["errors"]


# Rate limits.


@pytest.fixture
def limits(settings):
    cache.clear()
    settings.SIGNUP_RATE_LIMIT = "2/h"
    settings.RESEND_RATE_LIMIT = "2/h"
    yield
    cache.clear()


@pytest.mark.django_db
def test_signup_past_the_limit_gets_429_and_writes_nothing(client, limits):
    statuses = [
        post_json(client, SIGNUP, {**GOOD, "email": f"p{n}@example.test"}).status_code
        for n in range(3)
    ]

    assert statuses == [201, 201, 429]
    assert User.objects.count() == 2


@pytest.mark.django_db
def test_html_signup_past_the_limit_gets_a_readable_429_page(client, limits):
    for n in range(2):
        client.post("/accounts/signup/", {"email": f"p{n}@example.test"})

    page = client.post("/accounts/signup/", {"email": "p3@example.test"})

    assert page.status_code == 429 and b"Too many requests" in page.content
    assert client.get("/accounts/signup/").status_code == 200


@pytest.mark.django_db
def test_limits_count_per_client_address(client, limits):
    for _ in range(2):
        post_json(client, RESEND, {"email": "a@example.test"})

    other = client.post(
        RESEND,
        json.dumps({"email": "a@example.test"}),
        content_type="application/json",
        REMOTE_ADDR="127.0.0.2",
    )

    assert post_json(client, RESEND, {"email": "a@example.test"}).status_code == 429
    assert other.status_code == 202


@pytest.mark.django_db
def test_empty_limit_turns_limiting_off(client, settings):
    cache.clear()
    settings.RESEND_RATE_LIMIT = ""

    statuses = {
        post_json(client, RESEND, {"email": "a@example.test"}).status_code
        for _ in range(20)
    }

    assert statuses == {202}


@pytest.mark.django_db
def test_behind_a_proxy_clients_are_told_apart_by_the_header_it_sets(
    client, limits, settings
):
    settings.CLIENT_IP_HEADER = "X-Real-IP"

    def resend(address):
        return client.post(
            RESEND,
            json.dumps({"email": "a@example.test"}),
            content_type="application/json",
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_REAL_IP=address,
        ).status_code

    first_client = [resend("198.51.100.7") for _ in range(3)]
    second_client = resend("198.51.100.8")

    assert first_client == [202, 202, 429] and second_client == 202


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("[" * 100_000 + "]" * 100_000, 400),
        ('{"email": ' + "[" * 5000 + "]" * 5000 + "}", 400),
        ('{"email": "s@ex.test", "name": "x\\ud800y", "password": "a sturdy pw"}', 400),
        ('{"email": "s@ex.test", "name": "x", "password": "a sturdy \\udfff"}', 400),
        (
            '{"email": "s@ex.com", "name": "' + "x" * 3_000_000 + '", "password": "p"}',
            413,
        ),
    ],
    ids=["deep-array", "deep-field", "surrogate-name", "surrogate-password", "huge"],
)
def test_hostile_json_gets_a_json_4xx_not_a_500(client, body, status):
    response = client.post(SIGNUP, body, content_type="application/json")

    assert response.status_code == status
    assert "detail" in response.json()
    assert User.objects.count() == 0
