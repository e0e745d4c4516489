"""System checks for the account settings."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from users.rates import InvalidRate, parse_rate


@register("users")
def check_rate_limits(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    for name in ("SIGNUP_RATE_LIMIT", "RESEND_RATE_LIMIT", "RESET_RATE_LIMIT"):
        try:
            parse_rate(getattr(settings, name))
        except InvalidRate as exc:
            problems.append(Error(f"{name}: {exc}", id="users.E001"))
    return problems
