"""The jobs cron runs through django-crontab (see CRONJOBS in settings).

django-crontab runs a job inside a bare ``except`` that logs and exits 0,
so cron would never learn that a run failed. These wrappers end the process
with the command's own exit status instead.
"""

import logging
import os
import sys

from django.core.management import call_command
from django.core.management.base import CommandError

logger = logging.getLogger(__name__)


def send_outbox() -> None:
    _run("send_outbox")


def purge_outbox() -> None:
    _run("purge_outbox")


def _run(command: str) -> None:
    try:
        call_command(command)
    except CommandError as exc:
        _exit(command, exc.returncode, str(exc))
    # The job's own boundary: anything else would vanish into django-crontab's
    # handler, so it is logged here with its traceback and turned into status 1.
    except Exception as exc:
        logger.exception("outbox.cron_job_crashed command=%s", command)
        _exit(command, 1, f"{type(exc).__name__}: {exc}")


def _exit(command: str, status: int, reason: str) -> None:
    logger.error("outbox.cron_job_failed command=%s status=%s", command, status)
    sys.stderr.write(f"{command} failed (exit {status}): {reason}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    for handler in logging.getLogger().handlers:
        handler.flush()
    # HACK: os._exit until django-crontab stops catching every exception of a
    # job (its run_job ends in a bare except, which would swallow SystemExit).
    os._exit(status)
