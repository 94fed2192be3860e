"""Operator console for device tokens and the delivery log.

push_tokens and push_deliveries are the big tables: changelists join what they
show (`list_select_related`), skip the unfiltered total count, and the delivery
log is read-only (rows are written by the delivery engine only).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from core.admin import EstimatedCountPaginator
from delivery.models import PushDelivery, PushToken

OPERATOR_REASON = "deactivated by {user} in the admin"


@admin.register(PushToken)
class PushTokenAdmin(admin.ModelAdmin):
    list_display = (
        "short_token",
        "provider",
        "platform",
        "active",
        "app_user",
        "created_at",
        "invalidated_at",
        "invalid_reason",
    )
    list_filter = ("provider", "platform", "active", "project")
    list_select_related = ("app_user",)
    search_fields = ("=token", "=app_user__external_id")
    raw_id_fields = ("app_user",)
    readonly_fields = ("created_at", "last_registered_at", "invalidated_at", "invalid_reason")
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ("deactivate_tokens", "reactivate_tokens")

    @admin.display(description="Token", ordering="token")
    def short_token(self, obj: PushToken) -> str:
        return obj.token if len(obj.token) <= 24 else f"{obj.token[:20]}…{obj.token[-4:]}"

    # The engine deactivates tokens a provider rejects (delivery.services); these
    # actions are the operator's manual override, with the same three fields.
    @admin.action(description="Deactivate selected tokens", permissions=["change"])
    def deactivate_tokens(self, request: HttpRequest, queryset: QuerySet[PushToken]) -> None:
        reason = OPERATOR_REASON.format(user=request.user.get_username())[:200]
        count = queryset.filter(active=True).update(
            active=False, invalidated_at=timezone.now(), invalid_reason=reason
        )
        self.message_user(request, f"Deactivated {count} token(s).", messages.SUCCESS)

    @admin.action(description="Reactivate selected tokens", permissions=["change"])
    def reactivate_tokens(self, request: HttpRequest, queryset: QuerySet[PushToken]) -> None:
        count = queryset.filter(active=False).update(
            active=True, invalidated_at=None, invalid_reason=""
        )
        self.message_user(request, f"Reactivated {count} token(s).", messages.SUCCESS)


@admin.register(PushDelivery)
class PushDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "campaign",
        "run",
        "token",
        "provider",
        "status",
        "error_message",
        "attempts",
        "sent_at",
    )
    list_filter = ("status", "provider")
    list_select_related = ("campaign", "token")
    search_fields = ("=provider_msg_id",)
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
