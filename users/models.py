"""Accounts that log in with their email address."""

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import (
    AbstractBaseUser,
    BaseUserManager,
    PermissionsMixin,
)
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from users.addresses import mailbox_key


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
        # Logging in as Ann@Example.com, or any spelling of the same mailbox,
        # finds the account.
        try:
            return self.get(email_key=mailbox_key(username or ""))
        except ValueError:
            raise self.model.DoesNotExist from None

    def _create(self, email: str, password: str | None, **fields: Any) -> "User":
        user = self.model(email=self.normalize_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(max_length=254, unique=True)
    email_key = models.CharField(
        max_length=320,
        unique=True,
        editable=False,
        help_text="The mailbox the address reaches, one spelling for all of them.",
    )
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

    def save(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.email_key = mailbox_key(self.email)
        except ValueError:
            # Only the admin can store an address the forms would refuse; it
            # stays unique by its plain lower-case spelling.
            self.email_key = self.email.lower()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "email" in update_fields:
            kwargs["update_fields"] = {*update_fields, "email_key"}
        super().save(*args, **kwargs)

    def get_full_name(self) -> str:
        return self.name

    def get_short_name(self) -> str:
        return self.name

    def claim_mail_slot(self, field: str, interval_seconds: int) -> bool:
        """Stamp ``field`` with now unless it was stamped within the interval.

        The conditional update is the claim: of two requests at once, one
        wins; say whether this one did.
        """
        now = timezone.now()
        quiet = Q(**{f"{field}__isnull": True}) | Q(
            **{f"{field}__lte": now - timedelta(seconds=interval_seconds)}
        )
        claimed = type(self).objects.filter(quiet, pk=self.pk).update(**{field: now})
        return claimed == 1

    def activate(self) -> None:
        self.is_active = True
        self.activated_at = timezone.now()
        self.save(update_fields=["is_active", "activated_at"])
