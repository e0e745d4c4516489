"""The sign-up form."""

import unicodedata
from collections.abc import Iterator
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import sanitize_address
from django.core.validators import validate_email
from django.template.loader import render_to_string

from outbox.api import enqueue
from outbox.models import Priority
from users.addresses import mailbox_key
from users.models import User

EMAIL_TAKEN = "An account with this email address already exists."
# Control, format (zero-width and the like), surrogate, private, unassigned,
# and line or paragraph separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def reject_control_characters(value: str) -> None:
    """Refuse line breaks and other control characters.

    A name ends up in mail headers, where a line break injects more headers,
    and in the mail's text, where a control character is only noise.
    """
    if any(unicodedata.category(char) in {"Cc", "Zl", "Zp"} for char in value):
        raise ValidationError(
            "Line breaks and control characters are not allowed here.",
            code="control_character",
        )


def reject_unencodable(value: str) -> None:
    """Refuse lone surrogates: JSON can carry them, UTF-8 cannot store them."""
    if any("\ud800" <= char <= "\udfff" for char in value):
        raise ValidationError("This text holds invalid characters.", code="surrogate")


def deliverable_address(value: str) -> str:
    """Return the one spelling of an address that mail can be sent to.

    Look-alike forms (full-width letters, invisible characters) are folded or
    refused, so two accounts never share one mailbox; the result is checked
    with the same code that later writes it into the message.
    """
    email = unicodedata.normalize("NFKC", value).strip()
    if any(unicodedata.category(char) in _INVISIBLE for char in email):
        raise ValidationError(
            "The address holds invisible or control characters.", code="invisible"
        )
    local_part = email.rpartition("@")[0]
    if not local_part.isascii():
        raise ValidationError(
            "Use an address whose part before the @ has only plain letters, "
            "digits and punctuation (A-Z, 0-9).",
            code="non_ascii_local_part",
        )
    email = User.objects.normalize_email(email)
    if len(email) > 254:
        raise ValidationError("This address is too long.", code="too_long")
    validate_email(email)
    try:
        sanitize_address(email, "utf-8")
        mailbox_key(email)
    except (ValueError, UnicodeError):
        raise ValidationError(
            "Mail cannot be sent to this address.", code="undeliverable"
        ) from None
    return email


class SignupForm(forms.Form):
    # A plain field: deliverable_address() validates, so that its clearer
    # messages are not pre-empted by Django's generic "Enter a valid email".
    email = forms.CharField(
        max_length=254,
        label="Email address",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    name = forms.CharField(
        max_length=150,
        label="Your name",
        validators=[reject_control_characters, reject_unencodable],
    )
    password1 = forms.CharField(
        label="Password",
        validators=[reject_unencodable],
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password again",
        validators=[reject_unencodable],
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_email(self) -> str:
        email = deliverable_address(self.cleaned_data["email"])
        if User.objects.filter(email_key=mailbox_key(email)).exists():
            raise ValidationError(EMAIL_TAKEN, code="email_taken")
        return email

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password1 = cleaned.get("password1")
        password2 = cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", "The two passwords differ.")
        elif password1:
            candidate = User(
                email=cleaned.get("email", ""), name=cleaned.get("name", "")
            )
            try:
                password_validation.validate_password(password1, candidate)
            except ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


class LoginForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        # Django's text says both fields may be case-sensitive; the email
        # address is not.
        "invalid_login": "Please enter a correct email address and password.",
        "not_activated": "This account is not active yet. Open the link in the "
        "email we sent you, or ask for a new link below.",
    }

    def clean(self) -> dict[str, Any]:
        try:
            return super().clean()
        except ValidationError as error:
            if error.code == "invalid_login" and self._right_password_not_active():
                raise ValidationError(
                    self.error_messages["not_activated"], code="not_activated"
                ) from None
            raise

    def _right_password_not_active(self) -> bool:
        # Only someone who knows the password learns the account is inactive.
        try:
            key = mailbox_key(self.cleaned_data.get("username") or "")
        except ValueError:
            return False
        user = User.objects.filter(email_key=key).first()
        password = self.cleaned_data.get("password") or ""
        return bool(user and not user.is_active and user.check_password(password))


class ResendActivationForm(forms.Form):
    email = forms.CharField(
        max_length=254,
        label="Email address",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    def clean_email(self) -> str:
        return deliverable_address(self.cleaned_data["email"])


class AccountPasswordResetForm(PasswordResetForm):
    """Django's reset form, its mail queued as account mail (sent first).

    At most one mail per account per PASSWORD_RESET_INTERVAL, so the form
    cannot be used to flood a mailbox or spend the sending budget; the page
    answers the same either way.
    """

    def get_users(self, email: str) -> Iterator[Any]:
        try:
            key = mailbox_key(email)
        except ValueError:
            return
        interval = settings.PASSWORD_RESET_INTERVAL
        for user in User.objects.filter(email_key=key, is_active=True):
            if user.has_usable_password() and user.claim_mail_slot(
                "password_reset_sent_at", interval
            ):
                yield user

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        subject = " ".join(render_to_string(subject_template_name, context).split())
        message = EmailMultiAlternatives(
            subject,
            render_to_string(email_template_name, context),
            from_email,
            [to_email],
        )
        if html_email_template_name is not None:
            html = render_to_string(html_email_template_name, context)
            message.attach_alternative(html, "text/html")
        enqueue(message, priority=Priority.ACCOUNT)
