"""``manage.py outbox_status``: the queue's health for monitoring.

Prints one line (or JSON with --json) and exits 0, 1 or 2 for ok, warning or
critical, the way monitoring plugins do. Thresholds come from the options,
then OUTBOX_STATUS_THRESHOLDS, then the defaults in outbox.health.
"""

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError

from outbox.health import State, Thresholds, queue_health


class Command(BaseCommand):
    help = "Report the outbox's health; exit 0 ok, 1 warning, 2 critical."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON.")
        for name in Thresholds.__dataclass_fields__:
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                type=float,
                help=f"Threshold {name} (seconds or a count).",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        overrides = {name: options[name] for name in Thresholds.__dataclass_fields__}
        try:
            health = queue_health(Thresholds.from_settings(**overrides))
        except DatabaseError as exc:
            # No database, no mail: as critical as it gets, said in one line.
            detail = str(exc).strip().splitlines()
            reason = f"{type(exc).__name__}: {detail[0] if detail else 'no detail'}"
            if options["json"]:
                line = json.dumps({"state": "critical", "reasons": [reason]})
            else:
                line = f"OUTBOX CRITICAL - database unreachable ({reason})"
            self.stdout.write(line)
            self.stdout.flush()
            sys.exit(int(State.CRITICAL))
        if options["json"]:
            self.stdout.write(json.dumps(health.as_json(), sort_keys=True))
        else:
            self.stdout.write(health.summary())
        self.stdout.flush()
        # The state is the answer, not an error: exit without a traceback.
        sys.exit(int(health.state))
