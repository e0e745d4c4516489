"""A small JSON API for app clients: sign up and ask for a new activation link.

Requests are JSON objects; answers are JSON with a short ``detail`` and, for
a 400, ``errors`` keyed by field, each a list of ``{"message", "code"}``. The
same services as the HTML pages do the work, in the same transactions.
"""

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from users import services
from users.forms import EMAIL_TAKEN, ResendActivationForm, SignupForm
from users.ratelimit import limit_posts

JsonView = Callable[[HttpRequest, dict[str, Any]], JsonResponse]


class BadRequest(Exception):
    def __init__(self, response: JsonResponse) -> None:
        self.response = response


def _too_many(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"detail": "Too many requests; try again later."}, status=429)


def json_post(view: JsonView) -> Callable[[HttpRequest], HttpResponse]:
    """Accept only POSTs of a JSON object and hand the object to ``view``.

    CSRF checks are off: a cross-site form cannot send application/json
    without a CORS preflight, which this site never grants, and the views
    log no one in.
    """

    @csrf_exempt
    @wraps(view)
    def wrapped(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            response = JsonResponse({"detail": "Use POST."}, status=405)
            response["Allow"] = "POST"
            return response
        if request.content_type != "application/json":
            return JsonResponse(
                {"detail": "Send a JSON body with Content-Type: application/json."},
                status=415,
            )
        try:
            data = json.loads(request.body)
        except RequestDataTooBig:
            return JsonResponse({"detail": "The body is too large."}, status=413)
        # RecursionError: nesting deeper than the parser's stack.
        except (ValueError, RecursionError):
            return JsonResponse({"detail": "The body is not valid JSON."}, status=400)
        if not isinstance(data, dict):
            return JsonResponse(
                {"detail": "The body must be a JSON object."}, status=400
            )
        try:
            return view(request, data)
        except BadRequest as bad:
            return bad.response

    return wrapped


def _strings(data: dict[str, Any], names: list[str]) -> dict[str, str]:
    """Take the named fields; each must be a string if present."""
    errors = {
        name: [{"message": "Must be a string.", "code": "invalid_type"}]
        for name in names
        if name in data and not isinstance(data[name], str)
    }
    if errors:
        raise BadRequest(_invalid(errors))
    return {name: data[name] for name in names if name in data}


def _invalid(errors: dict[str, Any]) -> JsonResponse:
    return JsonResponse({"detail": "Invalid input.", "errors": errors}, status=400)


@limit_posts("signup", "SIGNUP_RATE_LIMIT", _too_many)
@json_post
def signup(request: HttpRequest, data: dict[str, Any]) -> JsonResponse:
    fields = _strings(data, ["email", "name", "password"])
    password = fields.get("password")
    form = SignupForm(
        {
            "email": fields.get("email"),
            "name": fields.get("name"),
            "password1": password,
            "password2": password,
        }
    )
    if not form.is_valid():
        errors = form.errors.get_json_data()
        # One password field in the API; the form's second copy cannot differ.
        if "password1" in errors:
            errors["password"] = errors.pop("password1")
        errors.pop("password2", None)
        return _invalid(errors)
    try:
        services.register_user(
            email=form.cleaned_data["email"],
            name=form.cleaned_data["name"],
            password=form.cleaned_data["password1"],
        )
    except services.EmailAlreadyRegistered:
        return _invalid({"email": [{"message": EMAIL_TAKEN, "code": "email_taken"}]})
    return JsonResponse(
        {"detail": "Account created. Open the link in the activation email."},
        status=201,
    )


@limit_posts("resend", "RESEND_RATE_LIMIT", _too_many)
@json_post
def resend_activation(request: HttpRequest, data: dict[str, Any]) -> JsonResponse:
    form = ResendActivationForm(_strings(data, ["email"]))
    if not form.is_valid():
        return _invalid(form.errors.get_json_data())
    services.resend_activation(form.cleaned_data["email"])
    return JsonResponse(
        {
            "detail": "If that address belongs to an account that is not active "
            "yet, a new activation link is on its way."
        },
        status=202,
    )
