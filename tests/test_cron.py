"""The dispatcher under a real cron daemon (Debian's cron), and the exit status
a failed job hands to cron."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone

from outbox.models import DispatcherRun, OutboxMessage, Status
from tests.processes import dispatcher_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def manage(env, *args, timeout=60):
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cron_env(tmp_path):
    """An environment file like an operator's, and the bare env cron gives."""

    def make(smtp_port, **extra):
        settings_env = dispatcher_env(smtp_port, **extra)
        settings_env["CRON_LOG_FILE"] = str(tmp_path / "log" / "cron.log")
        env_file = tmp_path / "panacare.env"
        env_file.write_text(
            "".join(
                f"{name}={value}\n"
                for name, value in settings_env.items()
                if name not in {"PATH", "DJANGO_SETTINGS_MODULE"}
            )
        )
        return {"PATH": "/usr/bin:/bin", "PANACARE_ENV_FILE": str(env_file)}

    return make


def installed_hash(job_number):
    """The hash of an installed job, read from the crontab itself.

    (``crontab show`` assumes the line starts with python, which a command
    prefix breaks.)
    """
    lines = [
        line
        for line in subprocess.run(
            ["crontab", "-l"], capture_output=True, text=True
        ).stdout.splitlines()
        if "crontab run" in line
    ]
    return lines[job_number].split("crontab run ", 1)[1].split()[0]


def test_failed_job_reaches_cron_as_a_non_zero_exit(scripted, make_row, cron_env):
    server = scripted(replies={"GREETING": "421 4.3.2 Service not available"})
    make_row()
    env = cron_env(server.port)
    manage(env, "crontab", "remove")
    assert manage(env, "crontab", "add").returncode == 0
    try:
        # The line cron runs, less its log redirection: through
        # django-crontab's own "crontab run".
        done = manage(env, "crontab", "run", installed_hash(0))
    finally:
        manage(env, "crontab", "remove")

    assert done.returncode == 1
    assert "send_outbox failed (exit 1)" in done.stderr
    assert "421" in done.stderr
    run = DispatcherRun.objects.get()
    assert run.outcome == "fault"


@pytest.mark.slow
def test_cron_daemon_runs_the_dispatcher_and_the_mail_arrives(
    sink, make_row, cron_env, tmp_path
):
    if shutil.which("cron") is None or shutil.which("crontab") is None:
        pytest.fail("Debian's cron is missing: .ci/run installs and starts it")
    running = subprocess.run(["pgrep", "-x", "cron"], capture_output=True)
    assert running.returncode == 0, "the cron daemon is not running (.ci/run starts it)"
    row = make_row()
    env = cron_env(sink.port)
    manage(env, "crontab", "remove")
    added = manage(env, "crontab", "add")
    assert added.returncode == 0, added.stderr
    crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    assert "crontab run" in crontab and str(tmp_path / "panacare.env") in crontab
    try:
        # Cron starts jobs at the top of each minute: at most two minutes.
        [received] = sink.mailbox.wait_for(1, timeout=150)
    finally:
        removed = manage(env, "crontab", "remove")
    assert removed.returncode == 0
    assert (
        "crontab run"
        not in subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    )

    assert received.message_id == row.message_id
    row.refresh_from_db()
    assert row.status == Status.SENT
    assert DispatcherRun.objects.filter(
        sent=1, finished_at__lte=timezone.now()
    ).exists()
    log = (tmp_path / "log" / "cron.log").read_text()
    assert "sent=1" in log


def test_cron_job_with_a_missing_env_file_fails_loudly(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PANACARE_ENV_FILE": str(tmp_path / "gone.env")}

    done = manage(env, "send_outbox")

    assert done.returncode == 2
    assert "PANACARE_ENV_FILE" in done.stderr and "Traceback" not in done.stderr
    assert OutboxMessage.objects.count() == 0
    assert os.environ.get("PANACARE_ENV_FILE") is None
