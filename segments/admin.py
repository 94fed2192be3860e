"""Operator console for app users and segments.

app_users grows to millions of rows: the changelist skips the unfiltered total
count and searches external ids by prefix. Segments are validated by the API's
validator (`segments.services.clean_segment_fields`) and written by the segment
services, so the console cannot store rules the API refuses.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.safestring import SafeString, mark_safe

from core import access
from core.admin import EstimatedCountPaginator, adopt_saved
from core.admin_site import ProjectScopedAdmin
from core.api import refuse_unknown_fields
from core.console_json import error_response, request_object
from core.errors import ApplicationError, InvalidInput, NotFound
from core.models import Project
from core.timefmt import format_time, zoned
from delivery.selectors import USER_DELIVERIES_LIMIT, deliveries_of_user, tokens_of_user
from segments import selectors, services
from segments.models import AppUser, Segment
from segments.rules import rules_error, stored_rules, validate_rules
from segments.rules.grammar import (
    ALLOWED_OPS,
    ATTRIBUTE_KEY_RE,
    COMPLEMENTS,
    JSON_BUILTINS,
    OPERATORS,
    RESERVED_ATTRS,
    TOKEN_ATTRS,
    VERSION_ATTR,
    VERSION_OPS,
    attribute_kind,
)
from segments.serializers import PreviewSerializer


def _attribute(user: AppUser, name: str) -> str:
    value = (user.attributes or {}).get(name)
    return "" if value is None else str(value)


@admin.register(AppUser)
class AppUserAdmin(ProjectScopedAdmin):
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
                test_push_url=_optional_url("admin:app_user_test_push", user.pk)
                if access.principal_may(request.user, access.SEND_CAMPAIGNS, user)
                else None,
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


# ------------------------------------------------------------------------ segments
#
# The segment page is a rule builder (segments/static/segments/rules.js) that writes
# the rules JSON into the form's `rules` field, beside a live member count and sample.
# The builder only edits JSON: the form validates it with the API's validator, and the
# live panel asks `preview_view`, which runs the API's preview (`validate_rules` +
# `selectors.segment_preview`). docs/decisions.md, "Console segment builder".


def rule_vocabulary() -> dict[str, Any]:
    """The grammar's vocabulary for the builder, read from segments.rules.grammar.

    The builder offers what the grammar allows (operators per attribute kind, token
    choices) without a copy of those tables in JavaScript to drift from them.
    """
    builtins = list(dict.fromkeys((*JSON_BUILTINS, *RESERVED_ATTRS)))
    return {
        "operators": list(OPERATORS),
        "complements": COMPLEMENTS,
        "allowed_ops": {kind: list(ops) for kind, ops in ALLOWED_OPS.items()},
        "builtins": [
            {"name": name, "kind": attribute_kind(name), "choices": list(TOKEN_ATTRS.get(name, ()))}
            for name in builtins
        ],
        "version_attr": VERSION_ATTR,
        "version_ops": list(VERSION_OPS),
        "attribute_pattern": ATTRIBUTE_KEY_RE.pattern,
    }


class RuleBuilderWidget(forms.Textarea):
    """The rules JSON in a textarea, with the builder and the live panel around it.

    The textarea is the form's value either way: the builder keeps it in step, and
    it doubles as the "raw JSON" box (and as the whole editor without JavaScript).
    Rendered with the project's template engine (templates/admin/segments/segment/).
    """

    template_name = "admin/segments/segment/rule_builder.html"

    class Media:
        css = {"all": ("segments/rules.css",)}
        js = ("segments/rules.js",)

    def __init__(self, *, project_id: str = "") -> None:
        super().__init__(attrs={"rows": 8, "spellcheck": "false", "class": "rb-json"})
        self.project_id = project_id
        self.error_path = ""  # a refusal's details.path, for the builder to mark
        self.error_message = ""

    def render(
        self,
        name: str,
        value: Any,
        attrs: dict[str, Any] | None = None,
        renderer: Any = None,
    ) -> SafeString:
        context = self.get_context(name, value, attrs)
        context["builder"] = {
            "vocabulary": rule_vocabulary(),
            "preview_url": reverse("admin:segments_segment_preview"),
            "attributes_url": reverse("admin:segments_segment_attributes"),
            "project_id": self.project_id,
            "error_path": self.error_path,
            "error_message": self.error_message,
        }
        return mark_safe(render_to_string(self.template_name, context))  # noqa: S308


class SegmentForm(forms.ModelForm):
    """Validates through `clean_segment_fields`, exactly as the API does.

    `clean()` builds the body the API would get (every field on add, the changed
    ones on change, like a PATCH) and keeps the clean values in `segment_fields`
    for the service; the validator's errors land on their fields (a rules error's
    path also goes to the builder, which marks the offending node).
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
        if "rules" in self.fields:
            project = "" if self._adding() else str(self.instance.project_id)
            self.fields["rules"].widget = RuleBuilderWidget(project_id=project)
            self.fields["rules"].help_text = (
                "Build the rule with conditions and groups; an empty rule is everyone. "
                "The count and sample beside it are the API's preview of these rules."
            )

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
            if target == "rules":
                widget = self.fields["rules"].widget
                assert isinstance(widget, RuleBuilderWidget)
                widget.error_path = str(error.details.get("path", "rules"))
                widget.error_message = error.message
        return cleaned


def _project_of(value: Any, request: HttpRequest) -> Project:
    """The project a console JSON request names (`project_id`), as the API's alias does:
    one the user may read segments of, else NOT_FOUND (core/access.py)."""
    if value in (None, ""):
        raise InvalidInput("project_id is required.", details={"field": "project_id"})
    try:
        project = Project.objects.get(pk=uuid.UUID(str(value)))
    except (ValueError, Project.DoesNotExist) as exc:
        raise NotFound("Project not found.") from exc
    if not access.principal_may(request.user, access.VIEW_SEGMENTS, project):
        raise NotFound("Project not found.")
    return project


@admin.register(Segment)
class SegmentAdmin(ProjectScopedAdmin):
    form = SegmentForm
    list_display = (
        "name",
        "project",
        "member_count_display",
        "rules_status",
        "evaluated",
        "updated",
    )
    list_filter = ("project",)
    list_select_related = ("project",)
    search_fields = ("name",)
    fields = (
        "id",
        "project",
        "members_now",
        "name",
        "description",
        "rules",
        "rules_problem",
        "member_count_display",
        "evaluated",
        "created",
        "updated",
    )
    readonly_fields = (
        "id",
        "rules_problem",
        "members_now",
        "member_count_display",
        "evaluated",
        "created",
        "updated",
    )

    def get_fields(self, request: HttpRequest, obj: Segment | None = None) -> tuple[str, ...]:
        if obj is None:  # nothing saved to describe yet: the live panel shows the count
            return ("project", "name", "description", "rules")
        return tuple(str(name) for name in self.fields or ())

    def get_readonly_fields(
        self, request: HttpRequest, obj: Segment | None = None
    ) -> tuple[str, ...]:
        # Campaigns of its project point at it: it cannot move to another project.
        base = tuple(self.readonly_fields)
        return base if obj is None else (*base, "project")

    def get_urls(self) -> list[URLPattern]:
        views = [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name="segments_segment_preview",
            ),
            path(
                "attributes/",
                self.admin_site.admin_view(self.attributes_view),
                name="segments_segment_attributes",
            ),
        ]
        return views + super().get_urls()

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

    # Deleting goes through the service too (it refuses a segment in use, and audits).
    # The admin's confirmation page has already listed what protects it.

    def delete_model(self, request: HttpRequest, obj: Segment) -> None:
        services.segment_delete(project=obj.project, segment_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        for segment in queryset.select_related("project"):
            services.segment_delete(project=segment.project, segment_id=segment.pk)

    # ------------------------------------------------------------ JSON views

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """POST {"project_id", "rules"} -> the API's unsaved-rules preview, same answer.

        Validation and counting are the API's (`validate_rules`,
        `selectors.segment_preview`); errors come in the API's envelope, a bad rule
        with `details.path` naming the node for the builder to mark.
        """
        try:
            if request.method != "POST":
                raise ApplicationError(
                    "Use POST.", code="METHOD_NOT_ALLOWED", status=405, headers={"Allow": "POST"}
                )
            if not self.has_view_permission(request):
                raise ApplicationError("Forbidden.", code="FORBIDDEN", status=403)
            body = request_object(request)
            refuse_unknown_fields(body, allowed=("project_id", "rules"))
            project = _project_of(body.get("project_id"), request)
            if body.get("rules") is None:
                raise InvalidInput(
                    "rules is required.", code="MISSING_RULES", details={"field": "rules"}
                )
            rules = validate_rules(body["rules"])
            preview = selectors.segment_preview(project=project, rules=rules)
        except ApplicationError as error:
            return error_response(error)
        data = PreviewSerializer({"count": preview.count, "sample": preview.sample}).data
        for row in data["sample"]:
            row["url"] = reverse("admin:segments_appuser_change", args=[row["id"]])
        return JsonResponse(data)

    def attributes_view(self, request: HttpRequest) -> HttpResponse:
        """GET ?project_id= -> the attribute keys recent users carry (bounded read)."""
        try:
            if not self.has_view_permission(request):
                raise ApplicationError("Forbidden.", code="FORBIDDEN", status=403)
            project = _project_of(request.GET.get("project_id"), request)
        except ApplicationError as error:
            return error_response(error)
        seen = selectors.attributes_seen(project=project)
        return JsonResponse(
            {
                "attributes": [
                    {"name": a.name, "type": a.type, "examples": a.examples} for a in seen
                ],
                "scanned_users": selectors.ATTRIBUTE_SCAN_USERS,
            }
        )

    # ------------------------------------------------------------ columns

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

    @admin.display(description="Members now")
    def members_now(self, obj: Segment) -> str:
        """Counted as this page loads, by the API's preview of the saved segment."""
        try:
            preview = selectors.segment_preview(project=obj.project, rules=stored_rules(obj))
        except ApplicationError as error:
            return f"Not counted: {error.message}"
        return f"{preview.count:,} (counted just now)"

    @admin.display(description="Member count (last refresh)", ordering="member_count")
    def member_count_display(self, obj: Segment) -> str:
        return "—" if obj.member_count is None else f"{obj.member_count:,}"

    @admin.display(description="Counted at", ordering="evaluated_at")
    def evaluated(self, obj: Segment) -> str:
        return format_time(obj.evaluated_at, obj.project.default_timezone)

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: Segment) -> str:
        return format_time(obj.created_at, obj.project.default_timezone)

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, obj: Segment) -> str:
        return format_time(obj.updated_at, obj.project.default_timezone)
