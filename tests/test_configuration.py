"""A configuration that cannot work stops the command with one line and status 2
(case U5 and its kind)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "SECRET_KEY": "tests-only-not-secret",
    "DATABASE_URL": "sqlite:////nonexistent-dir/never.sqlite3",
}


def run_command(env, *args, cwd="/"):
    # cwd "/" and a bare environment, the way cron starts a job.
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"EMAIL_PORT": "abc"}, "EMAIL_PORT"),
        ({"OUTBOX_BATCH_SIZE": "x"}, "OUTBOX_BATCH_SIZE"),
        ({"OUTBOX_SEND_DEADLINE": "inf"}, "OUTBOX_SEND_DEADLINE"),
        ({"EMAIL_USE_TLS": "yes-please"}, "EMAIL_USE_TLS"),
        ({"TIME_ZONE": "Mars/Base"}, "TIME_ZONE"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"PANACARE_ENV_FILE": "/nonexistent/panacare.env"}, "PANACARE_ENV_FILE"),
        ({"EMAIL_USE_TLS": "1", "EMAIL_USE_SSL": "1"}, "EMAIL_USE_TLS"),
        ({"EMAIL_TIMEOUT": "20", "OUTBOX_SEND_DEADLINE": "5"}, "OUTBOX_SEND_DEADLINE"),
        ({"EMAIL_HOST": ""}, "EMAIL_HOST"),
        ({"EMAIL_PORT": "0"}, "EMAIL_PORT"),
        ({"OUTBOX_MAX_ATTEMPTS": "0"}, "OUTBOX_MAX_ATTEMPTS"),
        ({"OUTBOX_TRANSPORT": "no.such.Backend"}, "OUTBOX_TRANSPORT"),
        ({"SIGNUP_RATE_LIMIT": "10/0h"}, "SIGNUP_RATE_LIMIT"),
        ({"RESEND_RATE_LIMIT": "0/h"}, "RESEND_RATE_LIMIT"),
        ({"RESET_RATE_LIMIT": "10/x"}, "RESET_RATE_LIMIT"),
        ({"SIGNUP_RATE_LIMIT": "10/99999999999999999999d"}, "SIGNUP_RATE_LIMIT"),
        ({"OUTBOX_RATE_LIMIT": "-5"}, "OUTBOX_RATE_LIMIT"),
        ({"OUTBOX_DAILY_LIMIT": "-1"}, "OUTBOX_DAILY_LIMIT"),
        ({}, "migrate"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_unusable_configuration_exits_2_with_one_line_naming_it(overrides, named):
    done = run_command({**BASE_ENV, **overrides}, "send_outbox")

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and named in lines[0], done.stderr
    assert done.stdout == ""


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_cron_style_run_with_an_absolute_env_file_sends(tmp_path, sink, make_row):
    from django.db import connection

    from tests.processes import dispatcher_env

    make_row()
    settings_env = dispatcher_env(sink.port)
    env_file = tmp_path / "panacare.env"
    env_file.write_text(
        "".join(
            f"{name}={settings_env[name]}\n"
            for name in ("SECRET_KEY", "DATABASE_URL", "EMAIL_HOST", "EMAIL_PORT")
        )
    )
    assert connection.settings_dict["NAME"] in env_file.read_text()

    done = run_command(
        {"PATH": "/usr/bin", "PANACARE_ENV_FILE": str(env_file)}, "send_outbox"
    )

    assert done.returncode == 0, done.stderr
    assert "sent=1" in done.stdout
    assert len(sink.mailbox.wait_for(1)) == 1


@pytest.mark.parametrize("age", ["0d", "12h", "-1d", "1w", "", "99999999d"])
def test_purge_refuses_an_age_it_cannot_honour_with_status_2(age):
    env = {**BASE_ENV, "DATABASE_URL": "sqlite:///:memory:"}

    done = run_command(env, "purge_outbox", f"--older-than={age}")

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_status_with_the_database_out_of_reach_is_critical_in_one_line():
    env = {**BASE_ENV, "DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere"}

    done = run_command(env, "outbox_status")

    assert done.returncode == 2
    assert done.stdout.startswith("OUTBOX CRITICAL - database unreachable")
    assert "Traceback" not in done.stderr
