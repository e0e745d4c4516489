"""The outbox console in Django's admin.

Read-only: mail is never added or edited by hand. Staff with the view
permission see the queue, its health and each row's history; bodies hold
live account links, so reading them takes a permission of its own, and
without it every link is shown redacted.
"""

import re
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from outbox.health import queue_health
from outbox.models import OutboxAttempt, OutboxMessage

BODY_FIELDS = ("body", "alternatives", "attachments")
# Query-string filters the list accepts. Django would accept a lookup on any
# field, and a count that answers "body__contains=..." reveals a hidden body
# one character at a time; only fields that hold no secret are filterable.
FILTERABLE = frozenset(
    {
        "id",
        "status",
        "priority",
        "attempts",
        "reclaims",
        "unconfirmed_attempts",
        "last_error_kind",
        "last_smtp_code",
        "created_at",
        "next_attempt_at",
        "sent_at",
        "failed_at",
        "message_id",
    }
)
_LINK = re.compile(r"(https?://[^/\s\"'<>]+)[^\s\"'<>]*")


def redact_links(text: str) -> str:
    """Keep each link's site, drop its path: the path is where tokens live."""
    return _LINK.sub(r"\1/[link redacted]", text)


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


class AttemptInline(admin.TabularInline[OutboxAttempt, OutboxMessage]):
    model = OutboxAttempt
    fields = (
        "number",
        "started_at",
        "outcome",
        "smtp_code",
        "error_kind",
        "error",
        "duration_ms",
        "worker",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
        "last_error_kind",
    )
    list_filter = ("status", "last_error_kind", ReclaimedFilter, "created_at")
    search_fields = ("to", "cc", "bcc", "subject", "message_id")
    ordering = ("-id",)
    date_hierarchy = "created_at"
    inlines = [AttemptInline]
    actions = ["retry_now", "cancel"]
    change_list_template = "admin/outbox/outboxmessage/change_list.html"

    @admin.display(description="Recipients")
    def recipient_list(self, row: OutboxMessage) -> str:
        return ", ".join(row.recipients)

    @admin.display(description="Body (links redacted)")
    def body_redacted(self, row: OutboxMessage) -> str:
        return redact_links(row.body)

    @admin.display(description="HTML part (links redacted)")
    def html_redacted(self, row: OutboxMessage) -> str:
        return "\n\n".join(redact_links(a["content"]) for a in row.alternatives)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), "queue_health": queue_health()}
        return super().changelist_view(request, extra_context=context)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        names = [field.name for field in self.model._meta.fields]
        if self._may_read_bodies(request):
            return names
        hidden = [name for name in names if name not in BODY_FIELDS]
        return [*hidden, "body_redacted", "html_redacted"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

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

    def lookup_allowed(
        self, lookup: str, value: str, request: HttpRequest | None = None
    ) -> bool:
        allowed = FILTERABLE | {ReclaimedFilter.parameter_name}
        if lookup.split("__", 1)[0] not in allowed:
            return False
        return super().lookup_allowed(lookup, value, request)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Acting on the queue takes the model's change permission."""
        return request.user.has_perm("outbox.change_outboxmessage")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Mail is never deleted by hand: "Cancel" stops it, purge_outbox
        # removes finished rows once they are old.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewing stays possible for users with the view permission; nobody
        # edits mail by hand.
        return False

    def _may_read_bodies(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbox.view_outboxmessage_body")
