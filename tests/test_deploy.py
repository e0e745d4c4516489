"""The deploy kit: gunicorn from deploy/gunicorn.conf.py through a reload, and
the systemd units."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from outbox.dispatch import Dispatcher
from outbox.models import OutboxMessage
from tests.processes import dispatcher_env
from tests.smtp_servers import free_port
from users.models import User

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def post_signup(port, email):
    body = json.dumps({"email": email, "name": "Burst", "password": "a sturdy pw 42"})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/signup/",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None  # refused or reset while workers were replaced


def wait_for_http(port, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not answer")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_signup_burst_through_a_gunicorn_reload_loses_no_committed_mail(sink):
    port = free_port()
    env = {
        **dispatcher_env(sink.port),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_ACCESS_LOG": "/dev/null",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SIGNUP_RATE_LIMIT": "",
    }
    gunicorn = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(DEPLOY / "gunicorn.conf.py"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_http(port)
        statuses: dict[str, int | None] = {}
        halfway = threading.Event()

        def burst(worker):
            for n in range(15):
                email = f"burst{worker}-{n}@example.test"
                statuses[email] = post_signup(port, email)
                if worker == 0 and n == 7:
                    halfway.set()

        threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        assert halfway.wait(60)
        gunicorn.send_signal(signal.SIGHUP)  # what a deploy does
        for thread in threads:
            thread.join(120)
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        gunicorn.wait(30)

    created = {email for email, status in statuses.items() if status == 201}
    users = set(User.objects.values_list("email", flat=True))
    assert created and created <= users
    # Every committed sign-up has its row, whatever its HTTP answer was.
    assert OutboxMessage.objects.count() == len(users)

    report = Dispatcher(batch_size=100).run_once()

    received = sink.mailbox.wait_for(len(users))
    assert report.sent == len(users) == len(received)
    assert {m.recipients[0] for m in received} == users


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on this machine")
    units = []
    for unit in sorted(DEPLOY.glob("panacare-*.*")):
        # The units name /srv/panacare; verify checks that ExecStart exists.
        text = unit.read_text().replace("/srv/panacare", str(ROOT))
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / unit.name))

    done = subprocess.run(
        [analyze, "verify", *units],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )

    assert done.returncode == 0, done.stderr
    assert len(units) == 4
