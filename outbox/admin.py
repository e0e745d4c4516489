"""The outbox in Django's admin: a read-only view of every queued email."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from outbox.models import OutboxMessage


class ReclaimedFilter(admin.SimpleListFilter):
    """Rows taken back from a dispatcher that died holding them."""

    title = "reclaimed"
    parameter_name = "reclaimed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Reclaimed"), ("no", "Never reclaimed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(reclaims__gt=0)
        if self.value() == "no":
            return queryset.filter(reclaims=0)
        return queryset


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
    list_filter = ("status", "last_error_kind", ReclaimedFilter)
    search_fields = ("to", "cc", "bcc", "subject", "message_id")
    ordering = ("-id",)
    date_hierarchy = "created_at"

    @admin.display(description="Recipients")
    def recipient_list(self, row: OutboxMessage) -> str:
        return ", ".join(row.recipients)

    actions = ["retry_now", "cancel"]

    @admin.action(
        description="Retry now (due at once, attempts kept)", permissions=["operate"]
    )
    def retry_now(
        self, request: HttpRequest, queryset: QuerySet[OutboxMessage]
    ) -> None:
        done = sum(row.retry_now() for row in queryset)
        self.message_user(request, f"{done} message(s) will be sent on the next run.")

    @admin.action(description="Cancel (never send)", permissions=["operate"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        done = sum(row.cancel() for row in queryset)
        self.message_user(request, f"{done} pending message(s) cancelled.")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Acting on the queue takes the model's change permission."""
        return request.user.has_perm("outbox.change_outboxmessage")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewing stays possible for users with the view permission; nobody
        # edits mail by hand.
        return False
