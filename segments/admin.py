"""Operator console for app users and segments.

app_users grows to millions of rows: the changelist skips the unfiltered total
count and searches external ids by prefix. Segments are validated by the API's
validator (`segments.services.clean_segment_fields`) and written by the segment
services, so the console cannot store rules the API refuses.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse

from core.admin import EstimatedCountPaginator, adopt_saved
from core.errors import ApplicationError
from core.timefmt import zoned
from delivery.selectors import USER_DELIVERIES_LIMIT, deliveries_of_user, tokens_of_user
from segments import services
from segments.models import AppUser, Segment
from segments.rules import rules_error


def _attribute(user: AppUser, name: str) -> str:
    value = (user.attributes or {}).get(name)
    return "" if value is None else str(value)


@admin.register(AppUser)
class AppUserAdmin(admin.ModelAdmin):
    """A user's page also lists their devices and newest deliveries and, when the
    campaigns app plugs it in (campaigns.console_hooks), sends them a test push."""

    list_display = ("external_id", "project", "country", "language", "created", "last_seen")
    list_filter = ("project",)
    list_select_related = ("project",)
    search_fields = ("^external_id",)
    fields = ("id", "project", "external_id", "attributes", "created", "last_seen")
    ordering = ("-created_at",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    change_form_template = "admin/segments/appuser/change_form.html"

    created = zoned("created_at", "Created")
    last_seen = zoned("last_seen_at", "Last seen")

    def get_fields(self, request: HttpRequest, obj: AppUser | None = None) -> tuple[str, ...]:
        # last_seen_at is written by device registration; on add there is nothing to show.
        return ("project", "external_id", "attributes") if obj is None else self.fields

    def get_readonly_fields(
        self, request: HttpRequest, obj: AppUser | None = None
    ) -> tuple[str, ...]:
        # Moving a user to another project would orphan its tokens' project.
        base = ("id", "created", "last_seen")
        return base if obj is None else (*base, "project")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        user = self.get_object(request, unquote(object_id))
        if user is not None:
            context.update(
                user_tokens=list(tokens_of_user(user.pk)),
                user_deliveries=deliveries_of_user(user.pk),
                deliveries_limit=USER_DELIVERIES_LIMIT,
                deliveries_url=reverse("admin:delivery_pushdelivery_changelist"),
                test_push_url=_optional_url("admin:app_user_test_push", user.pk),
            )
        return super().change_view(request, object_id, form_url, context)

    @admin.display(description="Country")
    def country(self, obj: AppUser) -> str:
        return _attribute(obj, "country")

    @admin.display(description="Language")
    def language(self, obj: AppUser) -> str:
        return _attribute(obj, "language")


def _optional_url(name: str, *args: Any) -> str | None:
    """A console URL another app may or may not have plugged in."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


class SegmentForm(forms.ModelForm):
    """Validates through `clean_segment_fields`, exactly as the API does.

    `clean()` builds the body the API would get (every field on add, the changed
    ones on change, like a PATCH) and keeps the clean values in `segment_fields`
    for the service; the validator's errors land on their fields.
    """

    EDITABLE = ("name", "description", "rules")

    class Meta:
        model = Segment
        fields = ("project", "name", "description", "rules")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.segment_fields: services.SegmentFields = {}
        if "name" in self.fields:
            self.fields["name"].required = False  # the validator says MISSING_NAME

    def _adding(self) -> bool:
        return bool(self.instance._state.adding)

    def api_payload(self) -> dict[str, Any]:
        names = [n for n in self.EDITABLE if n in self.fields]
        if not self._adding():
            names = [n for n in names if n in self.changed_data]
        return {name: self.cleaned_data.get(name) for name in names}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        payload = self.api_payload()
        if not self._adding() and not payload:
            return cleaned
        try:
            self.segment_fields = services.clean_segment_fields(payload, partial=not self._adding())
        except ApplicationError as error:
            field = str(error.details.get("field", ""))
            target = field if field in self.fields else None
            self.add_error(target, f"{error.message} ({error.code})")
        return cleaned


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = (
        "name",
        "project",
        "member_count",
        "rules_status",
        "evaluated_at",
        "updated_at",
    )
    list_filter = ("project",)
    list_select_related = ("project",)
    search_fields = ("name",)
    fields = (
        "id",
        "project",
        "name",
        "description",
        "rules",
        "rules_problem",
        "member_count",
        "evaluated_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = (
        "id",
        "rules_problem",
        "member_count",
        "evaluated_at",
        "created_at",
        "updated_at",
    )

    def get_readonly_fields(
        self, request: HttpRequest, obj: Segment | None = None
    ) -> tuple[str, ...]:
        # Campaigns of its project point at it: it cannot move to another project.
        base = tuple(self.readonly_fields)
        return base if obj is None else (*base, "project")

    def save_model(
        self, request: HttpRequest, obj: Segment, form: SegmentForm, change: bool
    ) -> None:
        if not change:
            saved = services.segment_create(project=obj.project, fields=form.segment_fields)
        elif form.segment_fields:
            saved = services.segment_update(
                project=obj.project, segment_id=obj.pk, fields=form.segment_fields
            )
        else:
            return  # nothing changed: nothing to write
        adopt_saved(obj, saved)

    @admin.display(description="Rules")
    def rules_status(self, obj: Segment) -> str:
        problem = rules_error(obj.rules)
        return "OK" if problem is None else f"Invalid at {problem['path']}"

    @admin.display(description="Rules problem")
    def rules_problem(self, obj: Segment) -> str:
        problem = rules_error(obj.rules)
        if problem is None:
            return "None: the rules validate."
        return f"{problem['reason']} Previews and sends refuse this segment until it is fixed."
