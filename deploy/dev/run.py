"""``make run``: the whole product on one machine, for development.

Migrates the database (SQLite by default), then starts a local SMTP sink that
prints and saves every message, the site on http://127.0.0.1:8000, and the
dispatcher in loop mode. Ctrl-C stops all three.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("EMAIL_HOST", "127.0.0.1")
    env.setdefault("EMAIL_PORT", "1025")
    env.setdefault("PYTHONUNBUFFERED", "1")
    http_port = env.get("PANACARE_HTTP_PORT", "8000")
    env.setdefault("SITE_URL", f"http://127.0.0.1:{http_port}")

    manage = [PYTHON, str(ROOT / "manage.py")]
    for step in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v0"]):
        done = subprocess.run([*manage, *step], env=env, cwd=ROOT)
        if done.returncode != 0:
            return done.returncode

    commands = {
        "mail sink": [
            PYTHON,
            str(ROOT / "deploy" / "dev" / "mailsink.py"),
            "--port",
            env["EMAIL_PORT"],
            "--maildir",
            str(ROOT / "var" / "mail"),
        ],
        "site": [*manage, "runserver", f"127.0.0.1:{http_port}", "--noreload"],
        "dispatcher": [*manage, "send_outbox", "--watch", "--interval", "1"],
    }
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, command in commands.items():
        children[name] = subprocess.Popen(command, env=env, cwd=ROOT)
        time.sleep(0.3)  # keeps the three start-up banners in order

    sys.stdout.write(
        f"\nPanacare is running: open http://127.0.0.1:{http_port}/accounts/signup/\n"
        "Mail is printed here and saved under var/mail/. Ctrl-C stops everything.\n\n"
    )
    sys.stdout.flush()

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    status = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                sys.stderr.write(f"{name} exited with status {child.returncode}\n")
                status = child.returncode or 1
                stopping = True
        time.sleep(0.2)

    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
    return status


if __name__ == "__main__":
    sys.exit(main())
