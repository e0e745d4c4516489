"""Latency benchmarks for issue #6; prints figures, asserts nothing.

    .venv/bin/python bench/latency.py [--signups 200] [--requests 150]

1. Time from the sign-up commit to the message at a local SMTP sink, over
   --signups sign-ups: median and 99th percentile with `send_outbox --watch`,
   and with cron-style single passes once a minute (goal with --watch: median
   under 0.5 s, p99 under 1 s).
2. Sign-up latency through gunicorn (deploy/gunicorn.conf.py) under concurrent
   load while a watcher sends to a healthy sink, then while the SMTP server
   hangs (accepts and never answers): 99th percentiles (goal: within 10%).

Uses its own PostgreSQL database (panacare_bench) and servers on 127.0.0.1.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dispatch import ENV, recreate_database  # noqa: E402

recreate_database()

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from outbox.models import OutboxMessage  # noqa: E402
from tests.smtp_servers import free_port  # noqa: E402
from users.models import User  # noqa: E402
from users.services import register_user  # noqa: E402

PYTHON = sys.executable


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


class StampingSink:
    """bench/sink.py with --stamp; collects arrival times by Message-ID."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: dict[str, float] = {}
        self.process = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "sink.py"), str(self.port), "0", "--stamp"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message_id, arrived = line.split()
            self.arrivals[message_id] = float(arrived)

    def wait_for(self, count: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        while len(self.arrivals) < count and time.monotonic() < end:
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def env_for(smtp_port: int, **extra: str) -> dict[str, str]:
    return {**os.environ, **ENV, "EMAIL_PORT": str(smtp_port), **extra}


def clear() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE outbox_outboxmessage, users_user, outbox_dispatcherrun CASCADE"
        )


def sign_ups(count: int, per_second: float, tag: str) -> dict[str, float]:
    """Commit ``count`` sign-ups at a steady pace; Message-ID -> commit time."""
    committed: dict[str, float] = {}
    for n in range(count):
        started = time.monotonic()
        user = register_user(
            email=f"{tag}{n}@example.test", name="Bench", password="a sturdy pw 42"
        )
        committed_at = time.time()
        row = OutboxMessage.objects.filter(to=[user.email]).latest("id")
        committed[row.message_id] = committed_at
        time.sleep(max(0.0, 1 / per_second - (time.monotonic() - started)))
    return committed


def report(label: str, committed: dict[str, float], sink: StampingSink) -> None:
    latencies = [
        sink.arrivals[m] - t for m, t in committed.items() if m in sink.arrivals
    ]
    missing = len(committed) - len(latencies)
    out(
        f"    {label:<24} median {statistics.median(latencies):7.3f} s   "
        f"p99 {percentile(latencies, 0.99):7.3f} s   "
        f"({len(latencies)} delivered, {missing} missing)"
    )


def commit_to_mail(count: int) -> None:
    # Hashing is not what is measured here; keep sign-ups cheap.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    out(f"[1] sign-up commit to mail at a local sink, {count} sign-ups")

    clear()
    sink = StampingSink()
    watcher = subprocess.Popen(
        [PYTHON, str(ROOT / "manage.py"), "send_outbox", "--watch", "--interval", "30"],
        env=env_for(sink.port),
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)  # the watcher connects and LISTENs
        committed = sign_ups(count, per_second=20, tag="watch")
        sink.wait_for(count, timeout=60)
        report("--watch", committed, sink)
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(30)
        sink.stop()

    clear()
    sink = StampingSink()
    stop = threading.Event()

    def cron() -> None:
        # A single pass at the top of every minute, as cron starts it.
        while not stop.wait(60 - time.time() % 60):
            subprocess.run(
                [PYTHON, str(ROOT / "manage.py"), "send_outbox"],
                env=env_for(sink.port),
                stdout=subprocess.DEVNULL,
                check=False,
            )

    runner = threading.Thread(target=cron, daemon=True)
    runner.start()
    try:
        committed = sign_ups(count, per_second=count / 60, tag="cron")
        sink.wait_for(count, timeout=130)
        report("cron passes (1/min)", committed, sink)
    finally:
        stop.set()
        sink.stop()


def hanging_smtp_server() -> tuple[socket.socket, threading.Event]:
    """Accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    done = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return listener, done


def post_signup(port: int, email: str) -> float:
    body = json.dumps({"email": email, "name": "Load", "password": "a sturdy pw 42"})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/signup/",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
    except urllib.error.HTTPError as error:
        error.read()
    return time.perf_counter() - started


def load(port: int, requests: int, clients: int, tag: str) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        for n in counter:
            took = post_signup(port, f"{tag}{n}@example.test")
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def gunicorn_under_load(requests: int, clients: int = 4) -> None:
    out(f"[2] sign-up latency through gunicorn, {requests} requests, {clients} clients")
    results = {}
    for label in ("healthy", "hanging"):
        clear()
        sink: StampingSink | None = None
        hang = None
        if label == "healthy":
            sink = StampingSink()
            smtp_port = sink.port
        else:
            hang = hanging_smtp_server()
            smtp_port = hang[0].getsockname()[1]
        http_port = free_port()
        env = env_for(
            smtp_port,
            GUNICORN_BIND=f"127.0.0.1:{http_port}",
            GUNICORN_WORKERS="2",
            GUNICORN_ACCESS_LOG="/dev/null",
            ALLOWED_HOSTS="127.0.0.1",
            SIGNUP_RATE_LIMIT="",
        )
        gunicorn = subprocess.Popen(
            [str(Path(PYTHON).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        watcher = subprocess.Popen(
            [PYTHON, str(ROOT / "manage.py"), "send_outbox", "--watch"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(3)
            load(http_port, 10, clients, f"warm{label}")
            latencies = load(http_port, requests, clients, label)
        finally:
            for process in (watcher, gunicorn):
                process.send_signal(signal.SIGTERM)
                process.wait(60)
            if sink is not None:
                sink.stop()
            if hang is not None:
                hang[1].set()
                hang[0].close()
        results[label] = latencies
        out(
            f"    SMTP {label:<8} median {statistics.median(latencies) * 1000:7.0f} ms"
            f"   p99 {percentile(latencies, 0.99) * 1000:7.0f} ms"
        )
    ratio = percentile(results["hanging"], 0.99) / percentile(results["healthy"], 0.99)
    out(f"    p99 hanging / healthy  {ratio:5.2f}   (goal: within 0.90-1.10)")
    out(f"    users created: {User.objects.count()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signups", type=int, default=200)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--only", help="comma-separated figure numbers")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    chosen = set(args.only.split(",")) if args.only else {"1", "2"}
    out(f"Panacare latency benchmarks, {time.strftime('%Y-%m-%d %H:%M')}")
    if "1" in chosen:
        commit_to_mail(args.signups)
    if "2" in chosen:
        gunicorn_under_load(args.requests)


if __name__ == "__main__":
    main()
