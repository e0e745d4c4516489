"""Sign-up and activation, with the database as the only thing a request touches.

The user row and its activation email are written in one transaction through
the outbox; no request opens an SMTP connection.
"""

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from outbox.api import enqueue
from outbox.models import OutboxMessage, Priority
from users.addresses import mailbox_key
from users.models import User
from users.tokens import activation_tokens

logger = logging.getLogger(__name__)


class EmailAlreadyRegistered(ValueError):
    """Another account holds this address, whatever its letter case."""


def register_user(*, email: str, name: str, password: str) -> User:
    """Create an inactive account and queue its activation mail, atomically.

    Raise EmailAlreadyRegistered when the address is taken, including when a
    concurrent sign-up took it between the form's check and this insert.
    """
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                email=email,
                name=name,
                password=password,
                activation_sent_at=timezone.now(),
            )
            row = send_activation(user)
    except IntegrityError as exc:
        if User.objects.filter(email_key=mailbox_key(email)).exists():
            raise EmailAlreadyRegistered(email) from exc
        raise
    logger.info("users.signed_up user=%s outbox_row=%s", user.pk, row.pk)
    return user


def resend_activation(email: str) -> bool:
    """Queue a new activation mail for an inactive account; say whether it did.

    At most one mail per account per ACTIVATION_RESEND_INTERVAL: the update
    that moves ``activation_sent_at`` is the claim, so two requests at once
    cannot both queue one. Callers answer the same whatever this returns, so
    the response tells nobody whether the address has an account.
    """
    try:
        key = mailbox_key(email)
    except ValueError:
        return False
    with transaction.atomic():
        user = User.objects.filter(email_key=key, is_active=False).first()
        if user is None:
            return False
        interval = settings.ACTIVATION_RESEND_INTERVAL
        if not user.claim_mail_slot("activation_sent_at", interval):
            logger.info("users.activation_resend_skipped user=%s", user.pk)
            return False
        row = send_activation(user)
    logger.info("users.activation_resent user=%s outbox_row=%s", user.pk, row.pk)
    return True


def send_activation(user: User) -> OutboxMessage:
    """Queue a fresh activation mail for ``user`` in the caller's transaction."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = activation_tokens.make_token(user)
    path = reverse("activate", kwargs={"uidb64": uid, "token": token})
    context = {
        "user": user,
        "activation_url": f"{settings.SITE_URL}{path}",
        "valid_days": max(1, settings.ACTIVATION_TIMEOUT // 86400),
        "valid_hours": settings.ACTIVATION_TIMEOUT // 3600,
    }
    subject = render_to_string("users/email/activation_subject.txt", context)
    message = EmailMultiAlternatives(
        # A template that ends in a newline must not break the header.
        subject=" ".join(subject.split()),
        body=render_to_string("users/email/activation.txt", context),
        to=[user.email],
    )
    message.attach_alternative(
        render_to_string("users/email/activation.html", context), "text/html"
    )
    return enqueue(message, priority=Priority.ACCOUNT)
