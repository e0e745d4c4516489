"""The outbox in the Django admin."""

import pytest

from outbox.models import OutboxMessage, Status

LIST = "/admin/outbox/outboxmessage/"


@pytest.mark.django_db
@pytest.mark.parametrize("term", ["findme@example", "Quarterly report"])
def test_search_finds_rows_by_recipient_and_by_subject(admin_client, make_row, term):
    wanted = make_row(to=["findme@example.test"], subject="Quarterly report")
    other = make_row(to=["someone@example.test"], subject="Hello")

    page = admin_client.get(LIST, {"q": term}).content.decode()

    assert f"{LIST}{wanted.pk}/change/" in page
    assert f"{LIST}{other.pk}/change/" not in page


@pytest.mark.django_db
def test_list_filters_by_status(admin_client, make_row):
    pending = make_row()
    failed = make_row()
    OutboxMessage.objects.filter(pk=failed.pk).update(status=Status.FAILED)

    page = admin_client.get(LIST, {"status__exact": "failed"}).content.decode()

    assert f"{LIST}{failed.pk}/change/" in page
    assert f"{LIST}{pending.pk}/change/" not in page


@pytest.mark.django_db
def test_detail_is_read_only_and_nothing_can_be_added(admin_client, make_row):
    row = make_row()

    detail = admin_client.get(f"{LIST}{row.pk}/change/")
    add = admin_client.get(f"{LIST}add/")

    assert detail.status_code == 200
    assert 'name="subject"' not in detail.content.decode()
    assert add.status_code == 403


@pytest.mark.django_db
def test_retry_now_and_cancel_actions(admin_client, make_row):
    failed, pending, sent = make_row(), make_row(), make_row()
    OutboxMessage.objects.filter(pk=failed.pk).update(status=Status.FAILED, attempts=10)
    OutboxMessage.objects.filter(pk=sent.pk).update(status=Status.SENT)

    admin_client.post(
        LIST, {"action": "retry_now", "_selected_action": [failed.pk, sent.pk]}
    )
    admin_client.post(
        LIST, {"action": "cancel", "_selected_action": [pending.pk, sent.pk]}
    )

    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (Status.PENDING, 10)
    assert OutboxMessage.objects.get(pk=pending.pk).status == Status.CANCELLED
    assert OutboxMessage.objects.get(pk=sent.pk).status == Status.SENT


@pytest.mark.django_db
def test_nobody_deletes_mail_by_hand(admin_client, make_row):
    row = make_row()

    page = admin_client.get(f"{LIST}{row.pk}/delete/")
    actions = admin_client.get(LIST).content.decode()

    assert page.status_code == 403
    assert "delete_selected" not in actions
    assert OutboxMessage.objects.filter(pk=row.pk).exists()
