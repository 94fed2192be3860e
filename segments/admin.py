"""Operator console for app users and segments.

app_users grows to millions of rows: the changelist skips the unfiltered total
count and searches external ids by prefix.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from core.admin import EstimatedCountPaginator
from segments.models import AppUser, Segment


def _attribute(user: AppUser, name: str) -> str:
    value = (user.attributes or {}).get(name)
    return "" if value is None else str(value)


@admin.register(AppUser)
class AppUserAdmin(admin.ModelAdmin):
    list_display = ("external_id", "project", "country", "language", "created_at", "last_seen_at")
    list_filter = ("project",)
    list_select_related = ("project",)
    search_fields = ("^external_id",)
    readonly_fields = ("id", "created_at")
    fields = ("id", "project", "external_id", "attributes", "created_at", "last_seen_at")
    ordering = ("-created_at",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def get_readonly_fields(
        self, request: HttpRequest, obj: AppUser | None = None
    ) -> tuple[str, ...]:
        # Moving a user to another project would orphan its tokens' project.
        base = ("id", "created_at")
        return base if obj is None else (*base, "project")

    @admin.display(description="Country")
    def country(self, obj: AppUser) -> str:
        return _attribute(obj, "country")

    @admin.display(description="Language")
    def language(self, obj: AppUser) -> str:
        return _attribute(obj, "language")


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "member_count", "evaluated_at", "updated_at")
    list_filter = ("project",)
    list_select_related = ("project",)
    search_fields = ("name",)
    fields = (
        "id",
        "project",
        "name",
        "description",
        "rules",
        "member_count",
        "evaluated_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("id", "member_count", "evaluated_at", "created_at", "updated_at")
