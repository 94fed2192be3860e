"""Operator console for device tokens and the delivery log.

push_tokens and push_deliveries are the big tables: changelists join what they
show (`list_select_related`, no query per row), skip the unfiltered total count,
and search by exact values only (an external id goes through app_users' unique
index, then push_deliveries' (app_user, sent_at) index). The delivery log is
read-only (rows are written by the delivery engine only). Times carry their zone
(core.timefmt).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from core.admin import EstimatedCountPaginator
from core.admin_site import ProjectScopedAdmin
from core.timefmt import zoned
from delivery.models import PushDelivery, PushToken
from delivery.services import tokens_set_active

OPERATOR_REASON = "deactivated by {user} in the admin"


def looks_like_provider_message_id(term: str) -> bool:
    if "/messages/" in term:
        return True
    try:
        uuid.UUID(term)
    except ValueError:
        return False
    return True


def short_token(token: PushToken) -> str:
    text = token.token
    return text if len(text) <= 24 else f"{text[:20]}…{text[-4:]}"


@admin.register(PushToken)
class PushTokenAdmin(ProjectScopedAdmin):
    list_display = (
        "short_token",
        "provider",
        "platform",
        "active",
        "app_user",
        "created",
        "invalidated",
        "invalid_reason",
    )
    list_filter = ("provider", "platform", "active", "project")
    list_select_related = ("app_user",)
    search_fields = ("=token", "=app_user__external_id")
    raw_id_fields = ("app_user",)
    fields = (
        "project",
        "app_user",
        "token",
        "provider",
        "platform",
        "active",
        "locale",
        "timezone",
        "app_version",
        "created",
        "last_registered",
        "invalidated",
        "invalid_reason",
    )
    readonly_fields = ("created", "last_registered", "invalidated", "invalid_reason")
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ("deactivate_tokens", "reactivate_tokens")

    created = zoned("created_at", "Created")
    last_registered = zoned("last_registered_at", "Last registered")
    invalidated = zoned("invalidated_at", "Invalidated")

    @admin.display(description="Token", ordering="token")
    def short_token(self, obj: PushToken) -> str:
        return short_token(obj)

    # The engine deactivates tokens a provider rejects (delivery.services); these
    # actions are the operator's manual override, with the same three fields.
    @admin.action(description="Deactivate selected tokens", permissions=["change"])
    def deactivate_tokens(self, request: HttpRequest, queryset: QuerySet[PushToken]) -> None:
        reason = OPERATOR_REASON.format(user=request.user.get_username())
        queryset = self.rows_allowed(request, queryset, "change")
        count = tokens_set_active(tokens=queryset, active=False, reason=reason)
        self.message_user(request, f"Deactivated {count} token(s).", messages.SUCCESS)

    @admin.action(description="Reactivate selected tokens", permissions=["change"])
    def reactivate_tokens(self, request: HttpRequest, queryset: QuerySet[PushToken]) -> None:
        queryset = self.rows_allowed(request, queryset, "change")
        count = tokens_set_active(tokens=queryset, active=True)
        self.message_user(request, f"Reactivated {count} token(s).", messages.SUCCESS)


@admin.register(PushDelivery)
class PushDeliveryAdmin(ProjectScopedAdmin):
    project_field = "token__project"
    list_display = (
        "id",
        "created",
        "campaign",
        "run",
        "user",
        "platform",
        "provider",
        "device",
        "status",
        "error_message",
        "attempts",
        "sent",
    )
    list_filter = ("status", "provider", "token__platform")
    list_select_related = ("campaign", "token", "app_user")
    # Exact matches only (get_search_results says how each stays off a table scan).
    search_fields = ("=app_user__external_id", "=provider_msg_id")
    search_help_text = "A user's external id, or a provider message id (exact)."
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = (
        "campaign",
        "run",
        "user",
        "platform",
        "provider",
        "token",
        "status",
        "error_message",
        "provider_msg_id",
        "attempts",
        "created",
        "claimed",
        "not_before_zoned",
        "sent",
    )
    readonly_fields = fields

    created = zoned("created_at", "Created")
    claimed = zoned("claimed_at", "Last attempt")
    not_before_zoned = zoned("not_before", "Not before")
    sent = zoned("sent_at", "Sent")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[PushDelivery], search_term: str
    ) -> tuple[QuerySet[PushDelivery], bool]:
        """A user's external id: their rows through the (app_user, sent_at) index.

        provider_msg_id has no index (every index costs each result write), so the
        message id is only looked for when the term has a provider's id shape (an
        APNs apns-id is a UUID, an FCM name is projects/<p>/messages/<id>); an OR on
        an unindexed column walks the whole table.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(app_user__external_id=term)
        if looks_like_provider_message_id(term):
            match |= Q(provider_msg_id=term)
        return queryset.filter(match), False

    @admin.display(description="User", ordering="app_user__external_id")
    def user(self, obj: PushDelivery) -> str:
        return obj.app_user.external_id if obj.app_user is not None else "—"

    @admin.display(description="Platform", ordering="token__platform")
    def platform(self, obj: PushDelivery) -> str:
        return obj.token.get_platform_display()

    @admin.display(description="Device")
    def device(self, obj: PushDelivery) -> str:
        return short_token(obj.token)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
