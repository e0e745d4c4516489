"""Rendering the common shapes of account mail without the email package.

Django renders a message through the email package's compat32 generator, which
costs about 0.3 ms for a short message: more than the dispatcher spends on
anything else of its own per message. Account mail is nearly always a text
part, perhaps with an HTML alternative, whose header lines are ASCII and short
enough never to be folded. For those this module writes the bytes Django would
write (the tests compare the two, byte for byte); for anything else it returns
None and the caller renders with Django.

The one difference is deliberate: a multipart boundary here is derived from
the Message-ID instead of drawn at random, so every attempt of a row sends the
same bytes.
"""

import hashlib
import re
import sys
from collections.abc import Iterable

from django.conf import settings
from django.core.mail import EmailMessage

# A header line Django's generator would write unchanged: printable ASCII words
# separated by single spaces, and short enough not to be folded.
_SIMPLE_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*")
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# A MIME subtype: RFC 2045's token, without its special characters.
SUBTYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+")
_MAX_HEADER_LINE = 78
# The limit on a line, in bytes without the CRLF (RFC 5321 and 5322).
MAX_LINE = 998
# What ends a line for SMTP and for the generator.
_LINE_END = re.compile(r"\r\n|\r|\n")
# Headers the MIME structure sets; an extra header of these names is left to
# Django, which would add it a second time.
_STRUCTURAL = {"subject", "content-type", "mime-version", "content-transfer-encoding"}
_ADDRESS_HEADERS = {"from", "to", "cc", "reply-to"}
# The shape of an address that Django's sanitize_address returns unchanged.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_BOUNDARY_WIDTH = len(repr(sys.maxsize - 1))


def quoted_by_django(text: str) -> bool:
    """Whether Django sends ``text`` quoted-printable: a line is too long."""
    return _over_the_limit(text.splitlines())


def too_long_for_smtp(text: str) -> bool:
    """Whether Django would send a line of ``text`` longer than SMTP allows.

    Django counts lines the way str.splitlines() does, which also breaks at
    characters SMTP does not (form feed, U+2028...): such a line is sent
    whole, not quoted, and the server refuses it for good.
    """
    return not quoted_by_django(text) and _over_the_limit(_LINE_END.split(text))


def _over_the_limit(lines: Iterable[str]) -> bool:
    # A line of at most a quarter of the limit in characters cannot pass it
    # in bytes, so most lines are never encoded.
    return any(len(ln) > MAX_LINE // 4 and len(ln.encode()) > MAX_LINE for ln in lines)


def plain_address(address: str) -> str | None:
    """Return ``address`` if it is a bare ASCII address Django keeps as it is."""
    if _PLAIN_ADDRESS.fullmatch(address) and len(address) <= 254:
        return address
    return None


def render_bytes(message: EmailMessage) -> bytes | None:
    """The bytes Django's SMTP backend would send, or None to leave it to Django.

    Requires the message to carry its Date and Message-ID headers already.
    """
    if message.attachments or (message.encoding or settings.DEFAULT_CHARSET) != (
        "utf-8"
    ):
        return None
    extra = {str(name): value for name, value in message.extra_headers.items()}
    lowered = {name.lower() for name in extra}
    if "date" not in lowered or "message-id" not in lowered or lowered & _STRUCTURAL:
        return None

    body = _text_part(message.body, message.content_subtype)
    alternatives = getattr(message, "alternatives", [])
    if body is None:
        return None
    if not alternatives:
        head, payload = body
        return _join(head, _common_headers(message, extra), payload)

    parts = [_part(body)] if message.body else []
    for content, mimetype in alternatives:
        kind, _, subtype = str(mimetype).partition("/")
        part = _text_part(content, subtype) if kind == "text" else None
        if part is None:
            return None
        parts.append(_part(part))
    boundary = _boundary(str(extra[_find(extra, "message-id")]), parts)
    if boundary is None:
        return None
    subtype = getattr(message, "alternative_subtype", "alternative")
    content_type = f'Content-Type: multipart/{subtype}; boundary="{boundary}"'
    if len(content_type) > _MAX_HEADER_LINE:
        # The generator folds this line after the semicolon.
        content_type = content_type.replace("; ", ";\r\n ", 1)
    head = [content_type, "MIME-Version: 1.0"]
    delimiter = f"--{boundary}\r\n".encode()
    payload = (
        delimiter
        + (b"\r\n" + delimiter).join(parts)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return _join(head, _common_headers(message, extra), payload)


def _common_headers(
    message: EmailMessage, extra: dict[str, object]
) -> list[str] | None:
    """The header lines after the MIME ones, in Django's order; None if any
    would not be written as it is."""
    pairs: list[tuple[str, object]] = [
        ("Subject", message.subject),
        ("From", extra.get("From", message.from_email)),
    ]
    for name, values in (
        ("To", message.to),
        ("Cc", message.cc),
        ("Reply-To", message.reply_to),
    ):
        if name in extra:
            pairs.append((name, extra[name]))
        elif values:
            pairs.append((name, ", ".join(str(v) for v in values)))
    pairs.extend(
        (name, value)
        for name, value in extra.items()
        if name.lower() not in _ADDRESS_HEADERS
    )
    lines = []
    for name, value in pairs:
        line = f"{name}: {value}"
        if (
            len(line) > _MAX_HEADER_LINE
            or not _FIELD_NAME.fullmatch(name)
            or not _SIMPLE_VALUE.fullmatch(str(value))
            # Text that looks like an encoded word is left to Django's rules.
            or "=?" in line
        ):
            return None
        lines.append(line)
    return lines


def _text_part(text: object, subtype: str) -> tuple[list[str], bytes] | None:
    """Headers and body of a text part as Django writes it, or None."""
    if not isinstance(text, str) or not SUBTYPE.fullmatch(subtype):
        return None
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: Django's path handles them
        return None
    if quoted_by_django(text) or too_long_for_smtp(text):
        return None
    head = [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        "MIME-Version: 1.0",
        f"Content-Transfer-Encoding: {'7bit' if encoded.isascii() else '8bit'}",
    ]
    return head, _LINE_END.sub("\r\n", text).encode()


def _part(part: tuple[list[str], bytes]) -> bytes:
    head, payload = part
    return "".join(f"{line}\r\n" for line in head).encode() + b"\r\n" + payload


def _boundary(message_id: str, parts: Iterable[bytes]) -> str | None:
    token = int(hashlib.sha256(message_id.encode()).hexdigest(), 16) % sys.maxsize
    boundary = f"{'=' * 15}{token:0{_BOUNDARY_WIDTH}d}=="
    # Stricter than the generator's test, which only looks at line starts.
    if any(boundary.encode() in part for part in parts):
        return None
    return boundary


def _join(head: list[str], common: list[str] | None, payload: bytes) -> bytes | None:
    if common is None:
        return None
    return "".join(f"{line}\r\n" for line in (*head, *common)).encode() + (
        b"\r\n" + payload
    )


def _find(headers: dict[str, object], lowered: str) -> str:
    return next(name for name in headers if name.lower() == lowered)
