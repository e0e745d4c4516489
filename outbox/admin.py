"""The outbox in Django's admin: a read-only view of every queued email."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from outbox.models import OutboxMessage


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin[OutboxMessage]):
    list_display = (
        "id",
        "status",
        "recipient_list",
        "subject",
        "attempts",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "last_error_kind")
    search_fields = ("to", "cc", "bcc", "subject", "message_id")
    ordering = ("-id",)
    date_hierarchy = "created_at"

    @admin.display(description="Recipients")
    def recipient_list(self, row: OutboxMessage) -> str:
        return ", ".join(row.recipients)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewing stays possible for users with the view permission; nobody
        # edits mail by hand.
        return False
