"""Operating the outbox: health, heartbeat, history, retention, the console."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.utils import timezone

from outbox.models import DispatcherRun, OutboxAttempt, OutboxMessage, Status
from users.models import User

ROOT = Path(__file__).resolve().parent.parent


def status_of(capsys, *options):
    with pytest.raises(SystemExit) as exited:
        call_command("outbox_status", *options)
    return exited.value.code, capsys.readouterr().out.strip()


# outbox_status and the heartbeat.


@pytest.mark.django_db
def test_status_is_ok_right_after_a_healthy_run(sink, make_row, dispatch, capsys):
    make_row()
    dispatch()

    code, line = status_of(capsys)

    assert code == 0, line
    assert line.startswith("OUTBOX OK") and "sent=1" in line


@pytest.mark.django_db
def test_status_is_critical_when_no_dispatcher_ever_ran(make_row, capsys):
    make_row()

    code, line = status_of(capsys)

    assert code == 2 and "no dispatcher run recorded" in line


@pytest.mark.django_db
def test_status_on_a_queue_broken_on_purpose(sink, make_row, dispatch, capsys):
    dispatch()  # a heartbeat, so only the queue itself is judged
    old = make_row()
    OutboxMessage.objects.filter(pk=old.pk).update(
        next_attempt_at=timezone.now() - timedelta(hours=1)
    )
    stuck = make_row()
    OutboxMessage.objects.filter(pk=stuck.pk).update(
        status=Status.SENDING, lease_expires_at=timezone.now() - timedelta(minutes=5)
    )
    failed = make_row()
    OutboxMessage.objects.filter(pk=failed.pk).update(
        status=Status.FAILED, failed_at=timezone.now()
    )

    code, line = status_of(capsys)
    json_code, text = status_of(capsys, "--json")

    assert code == 2
    assert "oldest due row waits" in line and "1 rows past their lease" in line
    assert "1 rows failed in 24h" in line
    data = json.loads(text)
    assert json_code == 2 and data["state"] == "critical"
    assert data["counts"]["pending"] == 1 and data["stuck"] == 1


@pytest.mark.django_db
def test_status_thresholds_can_be_given_as_options(sink, make_row, dispatch, capsys):
    dispatch()
    row = make_row()
    OutboxMessage.objects.filter(pk=row.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=100)
    )

    assert status_of(capsys)[0] == 0
    assert status_of(capsys, "--warn-oldest-due", "60")[0] == 1
    assert status_of(capsys, "--crit-oldest-due", "60")[0] == 2


@pytest.mark.django_db
def test_status_warns_when_the_last_run_was_stopped_by_a_fault(
    scripted, make_row, dispatch, capsys
):
    scripted(replies={"GREETING": "421 4.3.2 Busy"})
    make_row()
    dispatch()

    code, line = status_of(capsys)

    assert code == 1 and "last run ended: fault" in line


@pytest.mark.django_db
def test_every_run_leaves_a_heartbeat_but_idle_loop_passes_only_one_a_minute(
    dispatch,
):
    from outbox.dispatch import Dispatcher

    dispatch()
    looping = Dispatcher()
    for _ in range(5):
        looping.run_once()

    assert DispatcherRun.objects.count() == 2


@pytest.mark.django_db
def test_each_attempt_is_kept_in_the_row_history(scripted, make_row, dispatch):
    def rcpt(session, line):
        return "450 4.2.1 Busy" if session.index == 1 else "250 2.1.5 OK"

    scripted(replies={"RCPT": rcpt})
    row = make_row()

    dispatch()
    OutboxMessage.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    dispatch()

    history = list(OutboxAttempt.objects.filter(message=row).order_by("number"))
    assert [(a.number, a.outcome, a.smtp_code) for a in history] == [
        (1, "retry", 450),
        (2, "sent", None),
    ]
    assert history[0].error_kind == "temporary" and history[1].duration_ms >= 0


# Retention.


@pytest.mark.django_db
def test_purge_deletes_old_finished_rows_and_never_pending_ones(make_row):
    long_ago = timezone.now() - timedelta(days=40)
    rows = {status: make_row() for status in Status}
    OutboxMessage.objects.update(updated_at=long_ago, created_at=long_ago)
    recent = make_row()
    OutboxMessage.objects.filter(pk=recent.pk).update(status=Status.SENT)
    for status, row in rows.items():
        OutboxMessage.objects.filter(pk=row.pk).update(status=status)

    call_command("purge_outbox", "--older-than", "30d")

    left = set(OutboxMessage.objects.values_list("status", flat=True))
    assert left == {Status.PENDING, Status.SENDING, Status.SENT}
    assert OutboxMessage.objects.filter(pk=recent.pk).exists()


@pytest.mark.django_db
def test_purge_blanks_the_bodies_of_mail_sent_days_ago(make_row, settings):
    settings.OUTBOX_BLANK_SENT_AFTER_DAYS = 7
    old, fresh, waiting = make_row(), make_row(), make_row()
    OutboxMessage.objects.filter(pk__in=[old.pk, fresh.pk]).update(
        status=Status.SENT, sent_at=timezone.now()
    )
    OutboxMessage.objects.filter(pk=old.pk).update(
        sent_at=timezone.now() - timedelta(days=8)
    )

    call_command("purge_outbox")

    assert OutboxMessage.objects.get(pk=old.pk).body == ""
    assert OutboxMessage.objects.get(pk=fresh.pk).body != ""
    assert OutboxMessage.objects.get(pk=waiting.pk).body != ""


# The console.

LIST = "/admin/outbox/outboxmessage/"


@pytest.fixture
def viewer(client):
    """Staff who may view the outbox, but not read bodies."""
    user = User.objects.create_user(
        email="ops@example.test", password="x", is_active=True, is_staff=True
    )
    user.user_permissions.add(Permission.objects.get(codename="view_outboxmessage"))
    client.force_login(user)
    return user


@pytest.mark.django_db
def test_console_shows_the_queue_health_above_the_list(admin_client, make_row):
    make_row()

    page = admin_client.get(LIST).content.decode()

    assert "Queue health" in page and "oldest due" in page and "last run" in page


@pytest.mark.django_db
def test_viewer_without_body_permission_sees_links_redacted(client, viewer):
    from users.services import register_user

    register_user(email="pat@example.test", name="Pat", password="a sturdy pass 42")
    row = OutboxMessage.objects.get()
    token_path = row.body.split("/accounts/activate/")[1].split()[0]

    page = client.get(f"{LIST}{row.pk}/change/").content.decode()

    assert page and token_path not in page
    assert "[link redacted]" in page


@pytest.mark.django_db
def test_body_permission_shows_the_body(client, viewer):
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_outboxmessage_body")
    )
    from users.services import register_user

    register_user(email="pat@example.test", name="Pat", password="a sturdy pass 42")
    row = OutboxMessage.objects.get()

    page = client.get(f"{LIST}{row.pk}/change/").content.decode()

    assert row.body.split("/accounts/activate/")[1].split()[0] in page


@pytest.mark.django_db
def test_viewer_cannot_act_on_the_queue(client, viewer, make_row):
    row = make_row()

    client.post(LIST, {"action": "cancel", "_selected_action": [row.pk]})

    assert OutboxMessage.objects.get(pk=row.pk).status == Status.PENDING


# /healthz.


@pytest.mark.django_db
def test_healthz_is_200_when_the_database_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200 and response.content == b"ok\n"


def test_healthz_is_503_when_the_database_does_not_answer():
    # A real fault: nothing listens on port 1.
    script = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "print(Client().get('/healthz').status_code)\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "panacare.settings",
        "SECRET_KEY": "tests-only",
        "ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere",
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.stdout.strip().splitlines()[-1] == "503", done.stderr


@pytest.mark.django_db
def test_log_lines_name_rows_never_addresses_subjects_or_links(
    sink, make_row, dispatch, caplog
):
    from users.services import register_user

    caplog.set_level("INFO")
    register_user(email="pat@example.test", name="Pat", password="a sturdy pass 42")
    make_row(to=["ann@example.test"], subject="Secret subject")

    dispatch()

    ours = [r for r in caplog.records if r.name.split(".")[0] in {"outbox", "users"}]
    text = "\n".join(record.getMessage() for record in ours)
    for event in ("outbox.enqueued", "outbox.claimed", "outbox.sent", "run_finished"):
        assert event in text
    assert "row=" in text and "ms=" in text
    for leak in ("@example.test", "Secret subject", "/accounts/activate/", "Pat"):
        assert leak not in text


@pytest.mark.django_db
def test_refused_run_leaves_a_trace_that_monitoring_reports(settings, capsys):
    from django.core.management.base import CommandError

    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = True
    with pytest.raises(CommandError):
        call_command("send_outbox")

    code, line = status_of(capsys)

    assert code == 1 and "last run ended: misconfigured" in line
    assert "E001" in DispatcherRun.objects.get().detail


@pytest.mark.django_db
@pytest.mark.parametrize(
    "lookup",
    [
        "body__contains",
        "body__startswith",
        "alternatives__icontains",
        "history__error__contains",
        "headers__contains",
    ],
)
def test_viewer_cannot_probe_hidden_fields_through_list_filters(client, viewer, lookup):
    from users.services import register_user

    register_user(email="pat@example.test", name="Pat", password="a sturdy pass 42")

    response = client.get(LIST, {lookup: "/accounts/activate/"})

    assert response.status_code == 400
