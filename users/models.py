"""Accounts that log in with their email address."""

from typing import Any

from django.contrib.auth.models import (
    AbstractBaseUser,
    BaseUserManager,
    PermissionsMixin,
)
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(
        self, email: str, password: str | None = None, **fields: Any
    ) -> "User":
        """Create an account; it stays inactive until its link is opened."""
        fields.setdefault("is_active", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email: str, password: str, **fields: Any) -> "User":
        fields.update(is_active=True, is_staff=True, is_superuser=True)
        return self._create(email, password, **fields)

    def get_by_natural_key(self, username: str | None) -> "User":
        # Logging in as Ann@Example.com finds ann@example.com.
        return self.get(email__iexact=username)

    def _create(self, email: str, password: str | None, **fields: Any) -> "User":
        user = self.model(email=self.normalize_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=150)
    is_active = models.BooleanField(default=False)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    activation_sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last activation mail was queued."
    )
    password_reset_sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last password-reset mail was queued."
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["name"]

    class Meta:
        constraints = [
            # The database, not just the form, refuses a second account whose
            # address differs only in letter case, also under a race.
            models.UniqueConstraint(Lower("email"), name="users_user_email_ci_unique")
        ]

    def __str__(self) -> str:
        return f"user {self.pk}"

    def get_full_name(self) -> str:
        return self.name

    def get_short_name(self) -> str:
        return self.name

    def activate(self) -> None:
        self.is_active = True
        self.activated_at = timezone.now()
        self.save(update_fields=["is_active", "activated_at"])
