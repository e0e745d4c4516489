"""The fast renderer writes what Django writes, or leaves the message to Django."""

import re

import pytest
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import sanitize_address
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from outbox import mime
from outbox.api import enqueue
from outbox.emails import render, to_email_message
from outbox.models import OutboxMessage

examples = settings(
    max_examples=400,
    deadline=None,
    # Many drawn messages fall outside the fast path on purpose: the point is
    # that none inside it differs from Django.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)

words = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1)
phrases = st.lists(words, min_size=1, max_size=8).map(" ".join)
awkward = st.sampled_from(
    ["", " lead", "trail ", "two  spaces", "tab\there", "=?utf-8?q?x?=", "Zoë", "😀"]
)
header_values = st.one_of(phrases, phrases, phrases, awkward, st.text(max_size=90))
addresses = st.one_of(
    st.emails().filter(lambda a: len(a) < 40),
    st.sampled_from(
        [
            "Panacare <no-reply@panacare.test>",
            "person@example.test",
            "Zoë <zoe@example.test>",
            '"quoted name" <q@example.test>',
            "user@bücher.example",
            "a.b+tag@sub.example.test",
        ]
    ),
)
body_lines = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", "café", "x" * 999, "--", ".", "From me", "\r", "\x0b"]),
)
bodies = st.lists(body_lines, max_size=6).flatmap(
    lambda lines: st.sampled_from(["\n", "\r\n", "\r"]).map(lambda end: end.join(lines))
)
alternatives = st.lists(
    st.tuples(bodies, st.sampled_from(["text/html", "text/x-amp", "application/json"])),
    max_size=2,
)
extra_headers = st.dictionaries(
    st.sampled_from(["X-Tag", "Auto-Submitted", "Subject", "To", "From", "x-long"]),
    header_values,
    max_size=2,
)


def same_boundary(ours: bytes, django: bytes) -> bytes:
    """Give our message Django's (random) boundary, the one intended change."""
    pattern = rb'boundary="([^"]+)"'
    ours_match, django_match = re.search(pattern, ours), re.search(pattern, django)
    if ours_match is None or django_match is None:
        return ours
    return ours.replace(ours_match.group(1), django_match.group(1))


@examples
@given(
    subject=header_values,
    from_email=addresses,
    to=st.lists(addresses, min_size=1, max_size=2),
    cc=st.lists(addresses, max_size=2),
    reply_to=st.lists(addresses, max_size=1),
    body=bodies,
    subtype=st.sampled_from(["plain", "html"]),
    alternatives=alternatives,
    headers=extra_headers,
)
def test_fast_rendering_writes_the_bytes_django_writes(
    subject, from_email, to, cc, reply_to, body, subtype, alternatives, headers
):
    message = EmailMultiAlternatives(
        subject=subject,
        body=body,
        from_email=from_email,
        to=to,
        cc=cc,
        reply_to=reply_to,
        alternatives=alternatives,
        headers={
            **headers,
            "Date": "Fri, 04 Dec 2026 19:00:00 -0000",
            "Message-ID": "<1.2@panacare.test>",
        },
    )
    message.content_subtype = subtype
    ours = mime.render_bytes(message)
    assume(ours is not None)
    assert ours is not None
    django = message.message().as_bytes(linesep="\r\n")

    assert same_boundary(ours, django) == django


@examples
@given(address=addresses)
def test_a_plain_address_is_one_django_keeps_as_it_is(address):
    kept = mime.plain_address(address)
    assume(kept is not None)

    assert sanitize_address(address, "utf-8") == kept


def account_message(**overrides) -> EmailMultiAlternatives:
    fields = {
        "subject": "Activate your Panacare account",
        "body": "Hello,\n\nopen this link: https://panacare.test/a/1/xyz\n",
        "from_email": "Panacare <no-reply@panacare.test>",
        "to": ["person@example.test"],
        "headers": {"Date": "Fri, 04 Dec 2026 19:00:00 -0000", "Message-ID": "<a@b>"},
        **overrides,
    }
    message = EmailMultiAlternatives(**fields)
    message.attach_alternative("<p>Hello, café</p>\n", "text/html")
    return message


def test_account_mail_takes_the_fast_path():
    assert mime.render_bytes(account_message()) is not None


def test_a_boundary_found_in_a_part_leaves_the_message_to_django():
    first = mime.render_bytes(account_message())
    assert first is not None
    boundary = re.search(rb'boundary="([^"]+)"', first)
    assert boundary is not None

    message = account_message(body=f"--{boundary.group(1).decode()}\n")

    assert mime.render_bytes(message) is None
    assert b"Content-Type: multipart/alternative" in render(message).data


@pytest.mark.django_db
def test_every_attempt_of_a_row_sends_the_same_bytes():
    message = account_message()
    del message.extra_headers["Message-ID"]
    row = enqueue(message)
    again = OutboxMessage.objects.get(pk=row.pk)

    first = render(to_email_message(row)).data
    second = render(to_email_message(again)).data

    assert first == second
    assert b"multipart/alternative" in first


def test_an_alternative_with_parameters_or_bytes_is_left_to_django():
    with_parameters = account_message()
    with_parameters.alternatives = [("<p>é</p>", "text/html;charset=latin1")]
    as_bytes = account_message()
    as_bytes.alternatives = [(b"<p>hi</p>", "text/html")]

    assert mime.render_bytes(with_parameters) is None
    assert mime.render_bytes(as_bytes) is None


@pytest.mark.parametrize(
    "change",
    [
        {"body": "a" * 600 + "\u2028" + "b" * 600},
        {"subject": "Ein Konto für Zoë"},
        {"subject": "word " * 20},
        {"body": "x" * 1000},
        {"from_email": "Zoë <zoe@example.test>"},
    ],
)
def test_mail_outside_the_fast_path_is_still_rendered_by_django(change):
    message = account_message(**change)

    assert mime.render_bytes(message) is None
    assert render(message).data.startswith(b"Content-Type: multipart/alternative")
