"""``manage.py purge_outbox``: delete old finished rows, blank sent bodies."""

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbox import conf
from outbox.retention import blank_sent_bodies, purge

_AGE = re.compile(r"(\d{1,5})([dh])")


# Sending limits count the last 24 hours of sent rows, and monitoring reads
# the latest runs: a purge never reaches back less than a day.
MINIMUM_AGE = timedelta(days=1)


def parse_age(text: str) -> timedelta:
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise CommandError(
            f"{text!r} is not an age such as 30d or 48h (at most 5 digits)",
            returncode=2,
        )
    number, unit = int(match.group(1)), match.group(2)
    age = timedelta(days=number) if unit == "d" else timedelta(hours=number)
    if age < MINIMUM_AGE:
        raise CommandError(
            f"--older-than {text} is under a day; the last 24 hours of sent rows "
            "are what the sending limits count",
            returncode=2,
        )
    return age


class Command(BaseCommand):
    help = "Delete finished outbox rows and blank the bodies of old sent ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            help="Age of finished rows to delete, such as 30d or 12h "
            "(default OUTBOX_PURGE_AFTER_DAYS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["older_than"] is not None:
            age = parse_age(options["older_than"])
        else:
            age = timedelta(days=int(conf.get("OUTBOX_PURGE_AFTER_DAYS")))
        blank_after = timedelta(days=int(conf.get("OUTBOX_BLANK_SENT_AFTER_DAYS")))
        blanked = blank_sent_bodies(blank_after)
        deleted = purge(age)
        self.stdout.write(f"deleted={deleted} bodies_blanked={blanked}")
