"""System checks for settings that cannot work together.

``send_outbox`` runs the same checks before it starts and exits with status 2
when any fails, so a cron job with a broken configuration says so at once.
"""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.module_loading import import_string

from outbox import conf


@register("outbox")
def check_outbox_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    deadline = float(conf.get("OUTBOX_SEND_DEADLINE"))
    timeout = settings.EMAIL_TIMEOUT
    batch_size = int(conf.get("OUTBOX_BATCH_SIZE"))
    max_seconds = float(conf.get("OUTBOX_MAX_SECONDS"))
    lease = float(conf.get("OUTBOX_LEASE_SECONDS"))
    period = float(conf.get("OUTBOX_SCHEDULE_PERIOD"))

    if settings.EMAIL_USE_TLS and settings.EMAIL_USE_SSL:
        problems.append(
            Error(
                "EMAIL_USE_TLS and EMAIL_USE_SSL are both on.",
                hint="Use TLS for port 587 (STARTTLS) or SSL for port 465, not both.",
                id="outbox.E001",
            )
        )
    if timeout is None or timeout <= 0:
        problems.append(
            Error(
                "EMAIL_TIMEOUT must be a positive number of seconds.",
                hint="Without it a silent server holds a socket read forever.",
                id="outbox.E002",
            )
        )
    elif deadline < timeout:
        problems.append(
            Error(
                f"OUTBOX_SEND_DEADLINE ({deadline:g} s) is shorter than "
                f"EMAIL_TIMEOUT ({timeout:g} s).",
                hint="The deadline bounds a whole send; make it at least the "
                "socket timeout.",
                id="outbox.E003",
            )
        )
    if batch_size < 1 or max_seconds <= 0 or deadline <= 0:
        problems.append(
            Error(
                "OUTBOX_BATCH_SIZE, OUTBOX_MAX_SECONDS and OUTBOX_SEND_DEADLINE "
                "must be positive.",
                id="outbox.E004",
            )
        )
    if lease < max_seconds + deadline:
        problems.append(
            Error(
                f"OUTBOX_LEASE_SECONDS ({lease:g} s) is shorter than a run can "
                f"hold a row (OUTBOX_MAX_SECONDS + OUTBOX_SEND_DEADLINE = "
                f"{max_seconds + deadline:g} s).",
                hint="A live dispatcher's rows would be reclaimed and sent twice.",
                id="outbox.E005",
            )
        )
    if int(conf.get("OUTBOX_MAX_ATTEMPTS")) < 1:
        problems.append(
            Error("OUTBOX_MAX_ATTEMPTS must be 1 or more.", id="outbox.E006")
        )
    transport = conf.get("OUTBOX_TRANSPORT")
    try:
        import_string(transport)
    except ImportError:
        problems.append(
            Error(
                f"OUTBOX_TRANSPORT names {transport!r}, which cannot be imported.",
                hint="The default is outbox.smtp.DeadlineSMTPBackend.",
                id="outbox.E007",
            )
        )
    if transport == "outbox.smtp.DeadlineSMTPBackend":
        problems.extend(_smtp_address_problems())
    if max_seconds >= period:
        problems.append(
            Warning(
                f"OUTBOX_MAX_SECONDS ({max_seconds:g} s) is not below the "
                f"schedule period ({period:g} s).",
                hint="Runs will overlap; that is safe, but they compete for rows.",
                id="outbox.W001",
            )
        )
    return problems


def _smtp_address_problems() -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    if not str(settings.EMAIL_HOST).strip():
        problems.append(
            Error(
                "EMAIL_HOST is empty.", hint="Name the SMTP server.", id="outbox.E008"
            )
        )
    if not 1 <= int(settings.EMAIL_PORT) <= 65535:
        problems.append(
            Error(
                f"EMAIL_PORT ({settings.EMAIL_PORT}) is not a TCP port.",
                hint="Use 587 with EMAIL_USE_TLS or 465 with EMAIL_USE_SSL.",
                id="outbox.E009",
            )
        )
    return problems
