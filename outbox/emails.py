"""Turn a Django ``EmailMessage`` into outbox fields and back.

The row keeps the parts of the message rather than its rendered bytes, so the
admin can show and search them; the Message-ID and Date are fixed when the mail
is queued, so every attempt sends the same message.
"""

import base64
import email
import email.message
import functools
import re
from email.mime.base import MIMEBase
from email.policy import compat32
from email.utils import formatdate, getaddresses, make_msgid
from typing import Any, NamedTuple

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.message import sanitize_address
from django.utils.functional import Promise

from outbox import conf, mime
from outbox.exceptions import InvalidHeader, InvalidMessage, MessageBuildError

# Headers with their own fields; the rest travel in ``headers``.
_OWN_FIELDS = {"message-id", "from", "to", "cc", "reply-to"}


def message_id_domain(from_email: str) -> str:
    """Pick the Message-ID domain without asking DNS for the host's name."""
    configured: str | None = conf.get("OUTBOX_MESSAGE_ID_DOMAIN")
    if configured:
        return configured
    return _sender_domain(str(from_email))


@functools.lru_cache(maxsize=64)
def _sender_domain(from_email: str) -> str:
    addresses = getaddresses([from_email])
    if addresses and "@" in addresses[0][1]:
        return addresses[0][1].rsplit("@", 1)[1]
    return "localhost"


def to_fields(message: EmailMessage) -> dict[str, Any]:
    """Return the outbox field values that describe ``message``.

    Raise InvalidMessage for what Django would refuse at send time anyway, so
    the caller learns of it inside its own transaction.
    """
    recipients = message.recipients()
    if not recipients:
        raise InvalidMessage("the message has no recipients")
    _check_header_value("From", message.from_email)
    _check_header_value("Subject", message.subject)
    for address in [*recipients, *message.reply_to]:
        _check_header_value("address", address)
    for name, value in message.extra_headers.items():
        _check_header_name(str(name))
        _check_header_value(str(name), value)
    body = _text("body", message.body)
    alternatives = [
        (_text(f"{mimetype} alternative", content), mimetype)
        for content, mimetype in getattr(message, "alternatives", [])
    ]
    subtype = str(message.content_subtype)
    if len(subtype) > SUBTYPE_LENGTH or not mime.SUBTYPE.fullmatch(subtype):
        raise InvalidMessage(f"{message.content_subtype!r} is not a MIME subtype")

    headers = {str(k): str(v) for k, v in message.extra_headers.items()}
    lowered = {name.lower(): name for name in headers}
    if "message-id" in lowered:
        message_id = headers.pop(lowered["message-id"])
        if len(message_id) > MESSAGE_ID_LENGTH:
            raise InvalidHeader(
                f"the Message-ID is longer than {MESSAGE_ID_LENGTH} characters"
            )
    else:
        message_id = make_msgid(domain=message_id_domain(message.from_email))
    if "date" not in lowered:
        headers["Date"] = formatdate(localtime=settings.EMAIL_USE_LOCALTIME)

    return {
        "message_id": message_id,
        "from_email": str(message.from_email),
        "to": [str(a) for a in message.to],
        "cc": [str(a) for a in message.cc],
        "bcc": [str(a) for a in message.bcc],
        "reply_to": [str(a) for a in message.reply_to],
        "subject": str(message.subject),
        "body": body,
        "content_subtype": message.content_subtype,
        "alternatives": [
            {"content": content, "mimetype": mimetype}
            for content, mimetype in alternatives
        ],
        "attachments": [_attachment_to_json(a) for a in message.attachments],
        "headers": headers,
    }


def to_email_message(row: Any) -> EmailMultiAlternatives:
    """Rebuild the email a row describes, ready for any Django backend."""
    try:
        message = EmailMultiAlternatives(
            subject=row.subject,
            body=row.body,
            from_email=row.from_email,
            to=row.to,
            cc=row.cc,
            bcc=row.bcc,
            reply_to=row.reply_to,
            headers={**row.headers, "Message-ID": row.message_id},
            alternatives=[(a["content"], a["mimetype"]) for a in row.alternatives],
        )
        message.content_subtype = row.content_subtype
        for item in row.attachments:
            message.attachments.append(_attachment_from_json(item))
    except (KeyError, TypeError, ValueError) as exc:
        raise MessageBuildError(row.pk, str(exc)) from exc
    return message


# RFC 5322 field names: printable ASCII but the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# Everything Python's parser may take for the end of a line, not only CR and
# LF: any of them would let a value start a header of its own.
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# Those, and every control character but the tab.
_FORBIDDEN_IN_HEADER = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


# What the outbox table and SMTP can carry.
MESSAGE_ID_LENGTH = 255
SUBTYPE_LENGTH = 32
# An ASCII header word longer than this cannot be folded under SMTP's limit
# on a line.
_LONGEST_WORD = 900


def _text(what: str, text: object, *, lines: bool = True) -> str:
    """Return a text part, or refuse one no SMTP server could take as Django
    sends it."""
    if isinstance(text, Promise):  # a lazy translation
        text = str(text)
    if not isinstance(text, str):
        raise InvalidMessage(f"the {what} must be text, not {type(text).__name__}")
    if "\x00" in text:
        raise InvalidMessage(f"the {what} holds a NUL character")
    if lines and mime.too_long_for_smtp(text):
        raise InvalidMessage(
            f"a line of the {what} is longer than {mime.MAX_LINE} bytes; break it "
            "with a newline"
        )
    return text


def _check_header_name(name: str) -> None:
    if not _FIELD_NAME.fullmatch(name):
        raise InvalidHeader(f"{name!r} is not a valid header name")


def _check_header_value(name: str, value: object) -> None:
    text = str(value)
    if text.isascii() and any(len(word) > _LONGEST_WORD for word in text.split()):
        raise InvalidHeader(
            f"the {name} header holds a word longer than {_LONGEST_WORD} characters"
        )
    found = _FORBIDDEN_IN_HEADER.search(text)
    if found is None:
        return
    if found.group() in _LINE_BREAKS:
        raise InvalidHeader(f"the {name} header holds a line break")
    raise InvalidHeader(f"the {name} header holds a control character")


def _attachment_to_json(attachment: Any) -> dict[str, str]:
    if isinstance(attachment, MIMEBase):
        # Bytes, not text: a part may carry 8-bit data.
        return {"mime_base64": _b64(attachment.as_bytes())}
    filename, content, mimetype = attachment
    if isinstance(content, EmailMessage):  # a forwarded message
        content = content.message().as_bytes(linesep="\r\n")
    elif isinstance(content, email.message.Message):
        content = content.as_bytes()
    if isinstance(content, bytes):
        return {"filename": filename, "mimetype": mimetype, "base64": _b64(content)}
    # Only text/* parts go out as lines; others are base64-encoded.
    text = _text(
        f"attachment {filename!r}", content, lines=mimetype.startswith("text/")
    )
    return {"filename": filename, "mimetype": mimetype, "content": text}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _StoredPart(MIMEBase):
    """A MIME part read back from the row, as the parser built it.

    Django attaches MIMEBase parts as they are; parsing straight into this
    class keeps the payload's bytes (8-bit text included) untouched.
    """

    def __init__(self, policy: Any = None) -> None:
        email.message.Message.__init__(self, policy=policy or compat32)


def _attachment_from_json(item: dict[str, str]) -> Any:
    if "mime_base64" in item:
        data = base64.b64decode(item["mime_base64"])
        return email.message_from_bytes(data, _class=_StoredPart)
    if "mime" in item:  # rows queued before "mime_base64" kept text
        return email.message_from_string(item["mime"], _class=_StoredPart)
    content: str | bytes = (
        base64.b64decode(item["base64"]) if "base64" in item else item["content"]
    )
    return (item["filename"], content, item["mimetype"])


class Envelope(NamedTuple):
    """A rendered email: what SMTP's MAIL, RCPT and DATA commands carry."""

    sender: str
    recipients: list[str]
    data: bytes


def render(message: EmailMessage) -> Envelope:
    """Render ``message`` the way Django's SMTP backend would send it.

    Raise ValueError (or UnicodeError) for addresses or headers that cannot be
    encoded; no network is involved, so the error belongs to the message. A
    message without a Message-ID gets one here, from the sender's domain.
    """
    if not any(name.lower() == "message-id" for name in message.extra_headers):
        # Django would ask DNS for the host's name here, outside any timeout;
        # the ID is kept on the message, so a resend reuses it.
        domain = message_id_domain(str(message.from_email))
        message.extra_headers = {
            **message.extra_headers,
            "Message-ID": make_msgid(domain=domain),
        }
    encoding = message.encoding or settings.DEFAULT_CHARSET
    sender = _sanitized(str(message.from_email), encoding)
    recipients = [
        mime.plain_address(str(a)) or _sanitized(str(a), encoding)
        for a in message.recipients()
    ]
    if not recipients:
        raise ValueError("the message has no recipients")
    data = mime.render_bytes(message) or message.message().as_bytes(linesep="\r\n")
    return Envelope(sender, recipients, data)


# Parsing an address costs ~60 us and the sender is the same on nearly every
# message; the function depends on its arguments alone.
@functools.lru_cache(maxsize=256)
def _sanitized(address: str, encoding: str) -> str:
    return sanitize_address(address, encoding)
