"""Activation tokens: signed, time-limited, and useless as anything else.

The generator has its own salt, so a password-reset token never passes as an
activation token, nor the other way round; and its own validity period,
``ACTIVATION_TIMEOUT``.
"""

import enum
from datetime import datetime

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.utils.crypto import constant_time_compare
from django.utils.http import base36_to_int

from users.models import User


class TokenState(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"


class ActivationTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "users.tokens.ActivationTokenGenerator"

    def _make_hash_value(self, user: User, timestamp: int) -> str:
        # Neither the password nor is_active is hashed: activating does not
        # invalidate the link, so a second click can say "already active".
        joined = user.date_joined.replace(microsecond=0, tzinfo=None)
        return f"{user.pk}{user.email}{joined}{timestamp}"

    def state(self, user: User, token: str) -> TokenState:
        """Tell a valid token from an expired one and from a forged one."""
        try:
            ts_b36, _hash = token.split("-")
            timestamp = base36_to_int(ts_b36)
        except ValueError:
            return TokenState.INVALID
        authentic = any(
            constant_time_compare(
                self._make_token_with_timestamp(user, timestamp, secret), token
            )
            for secret in [self.secret, *self.secret_fallbacks]
        )
        if not authentic:
            return TokenState.INVALID
        age = self._num_seconds(self._now()) - timestamp
        if age > settings.ACTIVATION_TIMEOUT:
            return TokenState.EXPIRED
        return TokenState.VALID

    def check_token(self, user: User | None, token: str | None) -> bool:
        if user is None or not token:
            return False
        return self.state(user, token) is TokenState.VALID

    def _now(self) -> datetime:
        return datetime.now()


activation_tokens = ActivationTokenGenerator()
