"""Operator console for campaigns: the same rules as the API, through the same code.

The admin is another interface (STYLE.md, "APIs are thin"): the form builds the
payload the API would receive and runs `campaigns.validation` on it, and saving,
sending, cancelling, duplicating and deleting call `campaigns.services`. So the
admin cannot save or do anything the API would refuse, and every refusal shows
the API's error code and message.

Unlike stock ModelAdmin, the add/change and delete views do not wrap the request
in one transaction: the services commit before they enqueue broker work, and an
outer transaction would let a worker wake up before the row is visible.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.options import csrf_protect_m
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from campaigns import services
from campaigns.admin_composer import ComposerViews
from campaigns.admin_forms import (
    CONTENT_FIELDS,
    GOAL_FIELDS,
    OPTION_FIELDS,
    SCHEDULE_FIELDS,
    SCHEDULE_ZONE,
    TARGETING_FIELDS,
    PushCampaignForm,
)
from campaigns.admin_page import CampaignPageAdmin
from campaigns.models import CampaignRun, PushCampaign
from campaigns.recurrence import describe_recurrence
from campaigns.runs import campaign_stats
from campaigns.selectors import tags_in_use, with_current_run, with_tag
from campaigns.validation import clean_tag
from core.access import projects_where
from core.admin import adopt_saved
from core.admin_site import ProjectScopedAdmin, ProjectScopedInline
from core.errors import ApplicationError, InvalidInput
from core.models import Project
from core.timefmt import zoned

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldOpts, _FieldsetSpec
    from django.utils.functional import _StrPromise

BOOKKEEPING = (
    "status_badge",
    "stats_summary",
    "fire_at_zoned",
    "recurrence_anchor_zoned",
    "local_wall_clock",
    "periodic_task_link",
    "current_run",
    "last_error",
    "sent_at_zoned",
    "completed_at_zoned",
    "created_at_zoned",
    "updated_at_zoned",
    "deliveries_link",
)


class ServiceRefused(Exception):
    """A service refused a write the form had accepted (a race, or the broker)."""

    def __init__(self, error: ApplicationError) -> None:
        super().__init__(error.message)
        self.error = error


def describe(error: ApplicationError) -> str:
    return f"{error.code}: {error.message}"


# On a campaign that can no longer be edited (sending, sent...), these fields are shown
# in words (the display methods below) rather than as the JSON the API stores.
READABLE = {
    "platforms": "platforms_shown",
    "localizations": "localizations_shown",
    "actions": "actions_shown",
    "targeting": "targeting_shown",
    "tags": "tags_shown",
    "recurrence": "recurrence_shown",
    "quiet_hours": "quiet_hours_shown",
    "goals": "goals_shown",
    SCHEDULE_ZONE: "schedule_zone_shown",
}
PLATFORM_NAMES = {"ios": "iOS", "android": "Android", "web": "Web"}


def _listing(values: Any) -> str:
    return ", ".join(str(v) for v in values) if values else "—"


def _targeting_part(value: Any) -> str:
    if isinstance(value, dict) and set(value) <= {"include", "exclude"}:
        parts = [
            f"{side} {_listing(value[side])}" for side in ("include", "exclude") if value.get(side)
        ]
        return " · ".join(parts) or "—"
    if isinstance(value, list):
        return "; ".join(_targeting_part(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_targeting_part(v)}" for k, v in value.items())
    return str(value)


# Shown (and kept current while sending) by the Results panel on the campaign page.
LIVE_IN_RESULTS = ("status_badge", "stats_summary")


def _campaign_zone(obj: PushCampaign) -> str | None:
    """Times on a campaign's pages are on its project's clock (its default zone)."""
    return obj.project.default_timezone


def _run_zone(obj: CampaignRun) -> str | None:
    return obj.campaign.project.default_timezone


class CampaignRunInline(ProjectScopedInline, admin.TabularInline):
    """Each send, scheduled fire or recurrence, with its own counters (read-only)."""

    model = CampaignRun
    fields = (
        "number",
        "trigger",
        "occurrence_zoned",
        "status",
        "targeted",
        "sent",
        "failed",
        "invalid_tokens",
        "skipped",
        "unknown",
        "started_at_zoned",
        "completed_at_zoned",
        "error",
    )
    readonly_fields = fields
    verbose_name_plural = "Runs (as of page load; the Results panel above is live)"
    classes = ("collapse",)
    occurrence_zoned = zoned("occurrence", "Occurrence", _run_zone)
    started_at_zoned = zoned("started_at", "Started", _run_zone)
    completed_at_zoned = zoned("completed_at", "Completed", _run_zone)
    extra = 0
    can_delete = False
    ordering = ("-number",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[CampaignRun]:
        return super().get_queryset(request).select_related("campaign__project")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TagFilter(admin.SimpleListFilter):
    """Campaigns having a tag (`?tag=`, the API's own filter, `selectors.with_tag`),
    offering the tags in use (`selectors.tags_in_use`, bounded)."""

    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = projects_where(request.user)  # a member: their projects' tags only
        return [(tag, tag) for tag in tags_in_use(project_ids=ids)]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[PushCampaign]
    ) -> QuerySet[PushCampaign]:
        value = self.value()
        if not value:
            return queryset
        try:
            return with_tag(queryset, clean_tag("tag", value))
        except InvalidInput:
            return queryset.none()  # not a tag any campaign could carry


@admin.register(PushCampaign)
class PushCampaignAdmin(CampaignPageAdmin, ComposerViews, ProjectScopedAdmin):
    form = PushCampaignForm
    list_display = (
        "name",
        "status_badge",
        "scheduled_at_zoned",
        "segment",
        "targeted",
        "sent",
        "failed",
        "invalid",
        "created_at_zoned",
    )
    list_filter = ("status", TagFilter, "priority", "project")
    list_select_related = ("segment", "project")
    scheduled_at_zoned = zoned("scheduled_at", "Scheduled at", _campaign_zone)
    fire_at_zoned = zoned("fire_at", "Fire at", _campaign_zone)
    recurrence_anchor_zoned = zoned("recurrence_anchor", "Recurrence anchor", _campaign_zone)
    sent_at_zoned = zoned("sent_at", "Sent at", _campaign_zone)
    completed_at_zoned = zoned("completed_at", "Completed at", _campaign_zone)
    created_at_zoned = zoned("created_at", "Created at", _campaign_zone)
    updated_at_zoned = zoned("updated_at", "Updated at", _campaign_zone)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PushCampaign]:
        return with_current_run(super().get_queryset(request))

    def get_urls(self) -> list[URLPattern]:
        # The composer's and the campaign page's own views, before the admin's catch-all.
        return [*self._composer_urls(), *self._page_urls(), *super().get_urls()]

    search_fields = ("name", "title")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    readonly_fields = BOOKKEEPING
    inlines = (CampaignRunInline,)

    @admin.display(description="Platforms")
    def platforms_shown(self, obj: PushCampaign) -> str:
        return (
            _listing([PLATFORM_NAMES.get(p, p) for p in obj.platforms])
            if obj.platforms
            else ("Every platform")
        )

    @admin.display(description="Localizations")
    def localizations_shown(self, obj: PushCampaign) -> SafeString | str:
        if not obj.localizations:
            return "—"
        return format_html_join(
            mark_safe("<br>"),
            "<b>{}</b>: {} — {}{}{}",
            (
                (
                    language,
                    text.get("title", ""),
                    text.get("body", ""),
                    f" · image {text['image_url']}" if text.get("image_url") else "",
                    " · buttons " + ", ".join(f"{k}: {v}" for k, v in text["actions"].items())
                    if text.get("actions")
                    else "",
                )
                for language, text in obj.localizations.items()
            ),
        )

    @admin.display(description="Actions")
    def actions_shown(self, obj: PushCampaign) -> SafeString | str:
        if not obj.actions:
            return "—"
        return format_html_join(
            mark_safe("<br>"),
            "{} ({}){}{}",
            (
                (
                    a.get("title", ""),
                    a.get("id", ""),
                    f" → {a['url']}" if a.get("url") else "",
                    f" · icon {a['icon']}" if a.get("icon") else "",
                )
                for a in obj.actions
            ),
        )

    @admin.display(description="Targeting")
    def targeting_shown(self, obj: PushCampaign) -> SafeString | str:
        if not obj.targeting:
            return "Everyone the segment and platforms reach"
        return format_html_join(
            mark_safe("<br>"),
            "<b>{}</b>: {}",
            ((key.replace("_", " "), _targeting_part(v)) for key, v in obj.targeting.items()),
        )

    @admin.display(description="Goals")
    def goals_shown(self, obj: PushCampaign) -> SafeString | str:
        if not obj.goals:
            return "—"
        return format_html_join(
            mark_safe("<br>"),
            "<b>{}</b>: {} within {} h{}{}",
            (
                (
                    g.get("name", ""),
                    g.get("event", ""),
                    g.get("window_hours", ""),
                    format_html(", where <code>{}</code>", json.dumps(g["filter"]))
                    if g.get("filter")
                    else "",
                    " (primary)" if g.get("primary") else "",
                )
                for g in obj.goals
            ),
        )

    @admin.display(description="Tags")
    def tags_shown(self, obj: PushCampaign) -> str:
        return _listing(obj.tags)

    @admin.display(description="Recurrence")
    def recurrence_shown(self, obj: PushCampaign) -> str:
        return describe_recurrence(obj.recurrence) if obj.recurrence else "Does not repeat"

    @admin.display(description="Quiet hours")
    def quiet_hours_shown(self, obj: PushCampaign) -> str:
        quiet = obj.quiet_hours
        if not quiet:
            return "The project's default"
        action = quiet.get("action", "defer")
        return f"{quiet.get('start')} to {quiet.get('end')} in each user's zone ({action})"

    @admin.display(description="Time zone")
    def schedule_zone_shown(self, obj: PushCampaign) -> str:
        return str((obj.recurrence or {}).get("timezone") or obj.project.default_timezone or "UTC")

    def get_inlines(self, request: HttpRequest, obj: PushCampaign | None) -> list[Any]:
        return list(self.inlines) if obj is not None else []  # a new campaign has no runs

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        if "project" not in initial:
            # The usual case, one project: it is already chosen.
            ids = self._member_projects(request, "add")
            choices = Project.objects.all() if ids is None else Project.objects.filter(pk__in=ids)
            only = list(choices.values_list("pk", flat=True)[:2])
            if len(only) == 1:
                initial["project"] = str(only[0])
        return initial

    actions = ("send_now", "cancel", "duplicate")

    def get_fieldsets(self, request: HttpRequest, obj: PushCampaign | None = None) -> _FieldsetSpec:
        targeting = TARGETING_FIELDS if obj is not None else ("project", *TARGETING_FIELDS)
        fieldsets: list[tuple[str | _StrPromise | None, _FieldOpts]] = [
            ("Content", {"fields": CONTENT_FIELDS}),
            ("Targeting", {"fields": targeting}),
            ("Schedule", {"fields": (*SCHEDULE_FIELDS[:2], SCHEDULE_ZONE, *SCHEDULE_FIELDS[2:])}),
            ("Conversion goals", {"fields": GOAL_FIELDS}),
            ("Options", {"fields": OPTION_FIELDS, "classes": ("collapse",)}),
        ]
        if obj is not None and not obj.is_editable:
            # History is read, not edited: each field in words rather than as JSON.
            fieldsets = [
                (name, {**opts, "fields": tuple(READABLE.get(str(f), f) for f in opts["fields"])})
                for name, opts in fieldsets
            ]
        if obj is not None:
            # Status and counts are in the Results panel above, live; not twice here.
            status = [f for f in BOOKKEEPING if f not in LIVE_IN_RESULTS]
            fieldsets.insert(0, ("Status", {"fields": ("project", *status)}))
            fieldsets.insert(0, ("Results", {"fields": ("results_panel",)}))
        return fieldsets

    def get_readonly_fields(
        self, request: HttpRequest, obj: PushCampaign | None = None
    ) -> tuple[str, ...]:
        return BOOKKEEPING if obj is None else ("project", "results_panel", *BOOKKEEPING)

    def has_change_permission(self, request: HttpRequest, obj: PushCampaign | None = None) -> bool:
        # Sending, sent, cancelled and failed campaigns are history: view-only.
        if obj is not None and not obj.is_editable:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: PushCampaign | None = None) -> bool:
        if obj is not None and not obj.is_editable:
            return False
        return super().has_delete_permission(request, obj)

    def get_form(
        self,
        request: HttpRequest,
        obj: PushCampaign | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        # The form refuses a schedule the user's role may not set (core/access.py).
        return type(form.__name__, (form,), {"principal": request.user})

    def has_send_permission(self, request: HttpRequest, obj: PushCampaign | None = None) -> bool:
        """Send, schedule, cancel, test-push: the sender's (core/access.py)."""
        return self._may(request, "send", obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # Bulk delete would bypass campaign_delete's status rule; delete one at a time.
        actions.pop("delete_selected", None)
        return actions

    # --- columns ---------------------------------------------------------------

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: PushCampaign) -> SafeString:
        # Colours in console.css (the console's policy allows no style attribute).
        return format_html(
            '<span class="herald-badge herald-status-{}">{}</span>',
            obj.status,
            obj.get_status_display(),
        )

    def _stat(self, obj: PushCampaign, key: str) -> int:
        return campaign_stats(obj)[key]

    @admin.display(description="Targeted")
    def targeted(self, obj: PushCampaign) -> int:
        return self._stat(obj, "targeted")

    @admin.display(description="Sent")
    def sent(self, obj: PushCampaign) -> int:
        return self._stat(obj, "sent")

    @admin.display(description="Failed")
    def failed(self, obj: PushCampaign) -> int:
        return self._stat(obj, "failed")

    @admin.display(description="Invalid")
    def invalid(self, obj: PushCampaign) -> int:
        return self._stat(obj, "invalid_tokens")

    @admin.display(description="Stats")
    def stats_summary(self, obj: PushCampaign) -> str:
        stats = campaign_stats(obj)
        return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in stats.items())

    @admin.display(description="Beat schedule")
    def periodic_task_link(self, obj: PushCampaign) -> SafeString | str:
        """The django-celery-beat entry mirroring a recurrence (disable it to pause)."""
        if obj.periodic_task_id is None:
            return "—"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[obj.periodic_task_id])
        return format_html('<a href="{}">Periodic task {}</a>', url, obj.periodic_task_id)

    @admin.display(description="Deliveries")
    def deliveries_link(self, obj: PushCampaign) -> SafeString | str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:delivery_pushdelivery_changelist")
        return format_html('<a href="{}?campaign__id__exact={}">Per-token results</a>', url, obj.pk)

    # --- writes go through the services ----------------------------------------

    @csrf_protect_m
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # The stock view minus its transaction.atomic: services commit before they
        # enqueue (module docstring). Private API, unchanged since Django 1.x.
        try:
            return self._changeform_view(  # type: ignore[attr-defined]
                request, object_id, form_url, extra_context
            )
        except ServiceRefused as refused:
            self.message_user(request, describe(refused.error), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(
        self, request: HttpRequest, obj: PushCampaign, form: PushCampaignForm, change: bool
    ) -> None:
        try:
            if not change:
                saved = services.campaign_create(project=obj.project, fields=form.campaign_fields)
            elif form.campaign_fields:
                saved = services.campaign_update(
                    project=obj.project, campaign_id=obj.pk, fields=form.campaign_fields
                )
            else:
                return  # nothing changed: nothing to write
        except ApplicationError as error:
            raise ServiceRefused(error) from error
        adopt_saved(obj, saved)

    @csrf_protect_m
    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return self._delete_view(  # type: ignore[attr-defined]
                request, object_id, extra_context
            )
        except ServiceRefused as refused:
            self.message_user(request, describe(refused.error), messages.ERROR)
            return HttpResponseRedirect(
                reverse("admin:campaigns_pushcampaign_change", args=[object_id])
            )

    def delete_model(self, request: HttpRequest, obj: PushCampaign) -> None:
        try:
            services.campaign_delete(project=obj.project, campaign_id=obj.pk)
        except ApplicationError as error:
            raise ServiceRefused(error) from error

    # --- actions -----------------------------------------------------------------

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[PushCampaign],
        verb: str,
        call: Callable[[PushCampaign], object],
        permission: str,
    ) -> None:
        """Run `call` per campaign; a refusal is reported and the others still run."""
        done = 0
        for campaign in queryset.select_related("project").order_by("created_at"):
            if not self._may(request, permission, campaign):
                self.message_user(
                    request,
                    f'{verb} "{campaign.name}": your role in its project does not allow it.',
                    messages.ERROR,
                )
                continue
            try:
                call(campaign)
            except ApplicationError as error:
                self.message_user(
                    request, f'{verb} "{campaign.name}": {describe(error)}', messages.ERROR
                )
            else:
                done += 1
        if done:
            plural = "campaign" if done == 1 else "campaigns"
            self.message_user(request, f"{verb}: {done} {plural}.", messages.SUCCESS)

    @admin.action(description="Send now", permissions=["send"])
    def send_now(self, request: HttpRequest, queryset: QuerySet[PushCampaign]) -> None:
        self._each(
            request,
            queryset,
            "Send",
            lambda c: services.campaign_send(project=c.project, campaign_id=c.pk),
            "send",
        )

    @admin.action(description="Cancel", permissions=["send"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[PushCampaign]) -> None:
        self._each(
            request,
            queryset,
            "Cancel",
            lambda c: services.campaign_cancel(project=c.project, campaign_id=c.pk),
            "send",
        )

    @admin.action(description="Duplicate as a new draft", permissions=["add"])
    def duplicate(self, request: HttpRequest, queryset: QuerySet[PushCampaign]) -> None:
        self._each(
            request,
            queryset,
            "Duplicate",
            lambda c: services.campaign_duplicate(campaign=c),
            "add",
        )
