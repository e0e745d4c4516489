"""Pages of the account flow: sign up, activate, home."""

from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.utils.encoding import force_str
from django.utils.http import urlsafe_base64_decode
from django.views.decorators.http import require_http_methods

from users import services
from users.forms import (
    EMAIL_TAKEN,
    AccountPasswordResetForm,
    ResendActivationForm,
    SignupForm,
)
from users.models import User
from users.ratelimit import limit_posts
from users.services import EmailAlreadyRegistered, register_user
from users.tokens import TokenState, activation_tokens


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "users/home.html")


def rate_limited(request: HttpRequest) -> HttpResponse:
    return render(request, "users/rate_limited.html", status=429)


@require_http_methods(["GET", "HEAD", "POST"])
@limit_posts("signup", "SIGNUP_RATE_LIMIT", rate_limited)
def signup(request: HttpRequest) -> HttpResponse:
    # A POST is always bound, even with an empty body, so it is answered
    # with the form's errors and a 400 rather than a fresh form.
    form = SignupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            register_user(
                email=form.cleaned_data["email"],
                name=form.cleaned_data["name"],
                password=form.cleaned_data["password1"],
            )
        except EmailAlreadyRegistered:
            # A concurrent sign-up won the race after the form's own check.
            form.add_error("email", EMAIL_TAKEN)
        else:
            return redirect("signup_done")
    status = 400 if form.errors else 200
    return render(request, "users/signup.html", {"form": form}, status=status)


def signup_done(request: HttpRequest) -> HttpResponse:
    return render(request, "users/signup_done.html")


def activate(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    user = _user_from_uid(uidb64)
    state = activation_tokens.state(user, token) if user else TokenState.INVALID
    if user is None or state is TokenState.INVALID:
        return render(request, "users/activation_invalid.html", status=400)
    if user.is_active:
        return render(request, "users/activation_already.html")
    if state is TokenState.EXPIRED:
        form = ResendActivationForm(initial={"email": user.email})
        return render(
            request, "users/activation_expired.html", {"form": form}, status=400
        )
    user.activate()
    return render(request, "users/activation_done.html")


@require_http_methods(["GET", "HEAD", "POST"])
@limit_posts("resend", "RESEND_RATE_LIMIT", rate_limited)
def resend_activation(request: HttpRequest) -> HttpResponse:
    form = ResendActivationForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        services.resend_activation(form.cleaned_data["email"])
        # The same page whether or not a mail was queued: nothing here says
        # which addresses have accounts.
        return render(request, "users/resend_done.html")
    status = 400 if form.errors else 200
    return render(request, "users/resend.html", {"form": form}, status=status)


def _user_from_uid(uidb64: str) -> User | None:
    try:
        pk = int(force_str(urlsafe_base64_decode(uidb64)))
    except (TypeError, ValueError, OverflowError):
        return None
    return User.objects.filter(pk=pk).first()


@method_decorator(limit_posts("reset", "RESET_RATE_LIMIT", rate_limited), "dispatch")
class PasswordResetView(auth_views.PasswordResetView):
    """Django's view, with links built from SITE_URL like the activation mail."""

    subject_template_name = "users/email/password_reset_subject.txt"
    email_template_name = "users/email/password_reset.txt"
    form_class = AccountPasswordResetForm

    def form_valid(self, form: Any) -> HttpResponse:
        self.extra_email_context = {"site_url": settings.SITE_URL}
        return super().form_valid(form)
