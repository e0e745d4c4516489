"""Benchmarks of the outbox; prints figures, asserts nothing.

    .venv/bin/python bench/dispatch.py [--messages 2000] [--memory-rows 50000]
        [--history 1000000]

Uses its own PostgreSQL database (panacare_bench on 127.0.0.1, dropped and
created anew) and SMTP sinks in separate processes on 127.0.0.1. Figures:

1. one dispatcher run against a plain smtplib loop over one connection to the
   same sink: messages per second and the ratio (goal >= 0.8);
2. one against two dispatcher processes with a sink that takes 20 ms per
   message, as a remote relay does (goal >= 1.5);
3. peak memory (max RSS) of a run over --memory-rows pending 20 KB rows,
   against a run over 1,000 (goal: flat, bounded by the batch);
4. time to claim a batch beside --history finished rows against beside 1,000
   (goal <= 1.5);
5. one enqueue inside a transaction against a plain insert of the same row
   (goal <= 1.2).
"""

import argparse
import os
import smtplib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "panacare_bench"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
ENV = {
    "DJANGO_SETTINGS_MODULE": "panacare.settings",
    "SECRET_KEY": "bench-only-not-secret",
    "DATABASE_URL": DB_URL,
    "LOG_LEVEL": "WARNING",
    "EMAIL_HOST": "127.0.0.1",
}
os.environ.update(ENV)


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(
        "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
    ) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


recreate_database()

import django  # noqa: E402

django.setup()

from django.core.mail import EmailMessage  # noqa: E402
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from outbox.api import enqueue  # noqa: E402
from outbox.claim import claim_batch, release  # noqa: E402
from outbox.dispatch import Dispatcher  # noqa: E402
from outbox.emails import render, to_fields  # noqa: E402
from outbox.models import OutboxMessage, Status  # noqa: E402
from tests.smtp_servers import free_port  # noqa: E402


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Sink:
    def __init__(self, delay: float = 0.0) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "sink.py"),
                str(self.port),
                str(delay),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def sample_message(n: int, body_size: int = 2000) -> EmailMessage:
    line = "Hello, this is a line of an account message, as a template makes.\n"
    body = (line * (body_size // len(line) + 1))[:body_size]
    return EmailMessage(
        subject=f"Activate your Panacare account {n}",
        body=body,
        from_email="Panacare <no-reply@panacare.test>",
        to=[f"person{n}@example.test"],
    )


def fill(count: int, body_size: int = 2000) -> None:
    """Queue ``count`` pending rows fast, in bulk."""
    template = to_fields(sample_message(0, body_size))
    batch: list[OutboxMessage] = []
    for n in range(count):
        fields = dict(template, to=[f"person{n}@example.test"])
        fields["message_id"] = f"<bench.{n}.{time.time_ns()}@panacare.test>"
        batch.append(OutboxMessage(**fields))
        if len(batch) == 2000:
            OutboxMessage.objects.bulk_create(batch)
            batch = []
    OutboxMessage.objects.bulk_create(batch)


def clear() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE outbox_outboxmessage, outbox_dispatcherrun CASCADE")


def throughput(messages: int) -> None:
    sink = Sink()
    try:
        clear()
        fill(messages)
        dispatcher = Dispatcher(
            batch_size=100,
            max_seconds=3600,
            lease_seconds=7200,
            transport_options={"port": sink.port},
        )
        started = time.perf_counter()
        report = dispatcher.run_once()
        ours = report.sent / (time.perf_counter() - started)
        assert report.sent == messages, report.summary()

        envelopes = [render(sample_message(n)) for n in range(messages)]
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
            for envelope in envelopes:
                client.sendmail(*envelope)
        plain = messages / (time.perf_counter() - started)

        # For reference: Django's own SMTP backend, which renders MIME per
        # message but writes nothing to a database.
        emails = [sample_message(n) for n in range(messages)]
        django_smtp = SMTPBackend(host="127.0.0.1", port=sink.port, timeout=10)
        started = time.perf_counter()
        django_smtp.send_messages(emails)
        django_alone = messages / (time.perf_counter() - started)
    finally:
        sink.stop()
    out(f"[1] {messages} messages, one connection, local sink")
    out(f"    send_outbox run      {ours:8.0f} msg/s")
    out(f"    plain smtplib loop   {plain:8.0f} msg/s")
    out(f"    ratio                {ours / plain:8.2f}   (goal >= 0.80)")
    reference = django_alone / plain
    out(f"    Django SMTP backend  {django_alone:8.0f} msg/s  (ratio {reference:.2f})")


def run_dispatchers(count: int, port: int, rows: int) -> float:
    env = {**os.environ, "EMAIL_PORT": str(port), "OUTBOX_MAX_SECONDS": "600"}
    env["OUTBOX_LEASE_SECONDS"] = "3600"
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "send_outbox",
                "--batch-size",
                "20",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    for process in processes:
        assert process.wait(600) == 0
    elapsed = time.perf_counter() - started
    sent = OutboxMessage.objects.filter(status=Status.SENT).count()
    assert sent == rows, sent
    return rows / elapsed


def parallel(rows: int) -> None:
    sink = Sink(delay=0.020)
    try:
        clear()
        fill(rows)
        one = run_dispatchers(1, sink.port, rows)
        clear()
        fill(rows)
        two = run_dispatchers(2, sink.port, rows)
    finally:
        sink.stop()
    out(f"[2] {rows} messages, sink taking 20 ms per message (process start included)")
    out(f"    one dispatcher       {one:8.1f} msg/s")
    out(f"    two dispatchers      {two:8.1f} msg/s")
    out(f"    ratio                {two / one:8.2f}   (goal >= 1.5)")


PEAK_RUN = """
import django, sys
django.setup()
from django.core.management import call_command
call_command("send_outbox", "--batch-size", "100", "--max-seconds", "10")
status = open("/proc/self/status").read()
peak = next(line for line in status.splitlines() if line.startswith("VmHWM"))
sys.stderr.write(peak.split()[1] + "\\n")
"""


def peak_rss(rows: int) -> float:
    """Peak resident memory of one dispatcher run, in MiB.

    Read from the run's own /proc/self/status (VmHWM): getrusage's maxrss of
    a child also counts the parent's memory copied at fork, before exec.
    """
    sink = Sink()
    try:
        clear()
        fill(rows, body_size=20_000)
        env = {**os.environ, "EMAIL_PORT": str(sink.port)}
        done = subprocess.run(
            [sys.executable, "-c", PEAK_RUN],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=True,
        )
    finally:
        sink.stop()
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def memory(rows: int) -> None:
    small = peak_rss(1000)
    large = peak_rss(rows)
    pending = OutboxMessage.objects.filter(status=Status.PENDING).count()
    out("[3] peak memory of one run (batch 100, budget 10 s, 20 KB bodies)")
    out(f"    over 1,000 pending   {small:8.1f} MiB")
    out(f"    over {rows:,} pending {large:8.1f} MiB  ({pending:,} left pending)")
    out(f"    ratio                {large / small:8.2f}   (goal: flat, ~1.0)")


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def claim_and_release() -> None:
    release(claim_batch(100, lease_seconds=900))


def add_finished(count: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO outbox_outboxmessage (
                message_id, from_email, "to", cc, bcc, reply_to, subject, body,
                content_subtype, alternatives, attachments, headers, status,
                attempts, next_attempt_at, claimed_by, reclaims,
                unconfirmed_attempts, last_error, last_error_kind,
                refused_recipients, created_at, updated_at, sent_at, priority
            )
            SELECT '<old.' || g || '@panacare.test>', 'no-reply@panacare.test',
                '["old@example.test"]', '[]', '[]', '[]', 'old', 'old body',
                'plain', '[]', '[]', '{}', 'sent', 1,
                now() - interval '30 days', '', 0, 0, '', '', '{}',
                now() - interval '30 days', now(), now() - interval '29 days', 5
            FROM generate_series(1, %s) AS g
            """,
            [count],
        )
        cursor.execute("ANALYZE outbox_outboxmessage")


def claim_cost(history: int) -> None:
    clear()
    fill(1000)
    add_finished(1000)
    small = median_seconds(claim_and_release, 50)
    add_finished(history - 1000)
    large = median_seconds(claim_and_release, 50)
    out("[4] claim a batch of 100 from 1,000 due rows (median of 50)")
    out(f"    beside 1,000 finished      {small * 1000:8.2f} ms")
    out(f"    beside {history:,} finished {large * 1000:8.2f} ms")
    out(f"    ratio                      {large / small:8.2f}   (goal <= 1.5)")


def enqueue_cost() -> None:
    clear()
    message = sample_message(1)
    fields = to_fields(message)

    def queue() -> None:
        with transaction.atomic():
            enqueue(message)

    def plain_insert() -> None:
        with transaction.atomic():
            OutboxMessage(**fields).save(force_insert=True)

    median_seconds(queue, 50)  # warm up
    ours = median_seconds(queue, 500)
    plain = median_seconds(plain_insert, 500)
    out("[5] one row inside a committed transaction (median of 500)")
    out(f"    enqueue()            {ours * 1e6:8.0f} us")
    out(f"    plain insert         {plain * 1e6:8.0f} us")
    out(f"    ratio                {ours / plain:8.2f}   (goal <= 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--relay-messages", type=int, default=400)
    parser.add_argument("--memory-rows", type=int, default=50_000)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--only", help="comma-separated figure numbers to run")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    chosen = set(args.only.split(",")) if args.only else {"1", "2", "3", "4", "5"}
    server = connection.cursor().connection.info.server_version
    out(
        f"Panacare outbox benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} cores, PostgreSQL {server}"
    )
    if "1" in chosen:
        throughput(args.messages)
    if "2" in chosen:
        parallel(args.relay_messages)
    if "3" in chosen:
        memory(args.memory_rows)
    if "4" in chosen:
        claim_cost(args.history)
    if "5" in chosen:
        enqueue_cost()


if __name__ == "__main__":
    main()
