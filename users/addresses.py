"""The mailbox an email address reaches, as one canonical spelling.

Different spellings reach one mailbox: letter case, a quoted local part
("ann"@example.test), an internationalised domain in Unicode or punycode,
and characters IDNA maps away (straße.example is strasse.example). Accounts
are unique by this key, so one mailbox never holds two accounts.
"""

from email._header_value_parser import get_mailbox
from email.errors import HeaderParseError

from django.utils.encoding import punycode


def mailbox_key(address: str) -> str:
    """Return the canonical, lower-case ``local@ascii-domain`` of ``address``.

    Raise ValueError when the address cannot be parsed or its domain cannot
    be written in ASCII, which also means no mail can reach it.
    """
    try:
        token, rest = get_mailbox(address.strip())
    except (HeaderParseError, IndexError) as exc:
        raise ValueError(f"cannot parse the address: {exc}") from exc
    if rest or not token.local_part or not token.domain:
        raise ValueError("not a single address of the form local@domain")
    try:
        domain = punycode(token.domain)
    except UnicodeError as exc:
        raise ValueError(f"the domain cannot be written in ASCII: {exc}") from exc
    return f"{token.local_part}@{domain}".lower()
