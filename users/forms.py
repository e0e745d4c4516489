"""The sign-up form."""

from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from users.models import User

EMAIL_TAKEN = "An account with this email address already exists."


def reject_line_breaks(value: str) -> None:
    """Refuse CR and LF: a name ends up in mail headers, where they inject."""
    if "\r" in value or "\n" in value:
        raise ValidationError("Line breaks are not allowed here.", code="line_break")


class SignupForm(forms.Form):
    email = forms.EmailField(max_length=254, label="Email address")
    name = forms.CharField(
        max_length=150, label="Your name", validators=[reject_line_breaks]
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_email(self) -> str:
        email: str = User.objects.normalize_email(self.cleaned_data["email"])
        if User.objects.filter(email__iexact=email).exists():
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
        "invalid_login": "Please enter a correct email address and password. "
        "New accounts must be activated from the link in the email first.",
    }
