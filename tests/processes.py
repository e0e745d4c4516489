"""Run ``manage.py send_outbox`` as a real process against the test database."""

import os
import subprocess
import sys
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def dispatcher_env(smtp_port: int, **overrides: str) -> dict[str, str]:
    """The environment of a dispatcher process aimed at the test database."""
    db = connection.settings_dict
    user = db["USER"] or "postgres"
    url = f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "panacare.settings",
        "SECRET_KEY": "tests-only-not-secret",
        "DATABASE_URL": f"{url}/{db['NAME']}",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_port),
        "EMAIL_TIMEOUT": "2",
        "OUTBOX_SEND_DEADLINE": "5",
        "LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return env


def dispatcher_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), "send_outbox", *args]


def start_dispatcher(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        dispatcher_command(*args),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
