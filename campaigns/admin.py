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

import copy
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import csrf_protect_m
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from campaigns import services
from campaigns.admin_page import CampaignPageAdmin
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from campaigns.runs import campaign_stats
from campaigns.selectors import with_current_run
from campaigns.validation import CampaignFields, validate_create, validate_update
from core.admin import adopt_saved
from core.errors import ApplicationError
from core.models import Project
from segments.models import Segment

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldOpts, _FieldsetSpec
    from django.utils.functional import _StrPromise

STATUS_COLOURS: dict[str, str] = {
    CampaignStatus.DRAFT: "#6c757d",
    CampaignStatus.SCHEDULED: "#1f6feb",
    CampaignStatus.SENDING: "#d97706",
    CampaignStatus.SENT: "#15803d",
    CampaignStatus.CANCELLED: "#374151",
    CampaignStatus.FAILED: "#b91c1c",
}
# Form fields that are written through the validator, in form order. `segment`
# is sent as the API's `segment_id`.
CONTENT_FIELDS: tuple[str, ...] = (
    "name",
    "title",
    "body",
    "data",
    "localizations",
    "image_url",
    "url",
    "actions",
    "sound",
    "badge",
)
TARGETING_FIELDS: tuple[str, ...] = ("segment", "platforms", "targeting", "tags")
SCHEDULE_FIELDS: tuple[str, ...] = (
    "scheduled_at",
    "recurrence",
    "end_at",
    "quiet_hours",
    "deliver_in_user_timezone",
    "local_time_missed",
    "throttle_per_minute",
)
OPTION_FIELDS: tuple[str, ...] = ("priority", "ttl_seconds", "collapse_key")
WRITABLE = CONTENT_FIELDS + TARGETING_FIELDS + SCHEDULE_FIELDS + OPTION_FIELDS
# What an empty JSON input means for each JSON field (the model's default).
EMPTY_JSON: dict[str, Any] = {
    "data": {},
    "localizations": {},
    "actions": [],
    "platforms": [],
    "targeting": {},
    "tags": [],
    "recurrence": None,
    "quiet_hours": None,
}
BOOKKEEPING = (
    "status_badge",
    "stats_summary",
    "fire_at",
    "recurrence_anchor",
    "local_wall_clock",
    "periodic_task_link",
    "current_run",
    "last_error",
    "sent_at",
    "completed_at",
    "created_at",
    "updated_at",
    "deliveries_link",
)


class ServiceRefused(Exception):
    """A service refused a write the form had accepted (a race, or the broker)."""

    def __init__(self, error: ApplicationError) -> None:
        super().__init__(error.message)
        self.error = error


def describe(error: ApplicationError) -> str:
    return f"{error.code}: {error.message}"


def _form_field_for(api_field: str) -> str:
    """`segment_id` -> `segment`; `actions[0].title` / `recurrence.cron` -> the root."""
    root = re.split(r"[.\[]", api_field, maxsplit=1)[0]
    return "segment" if root == "segment_id" else root


class SegmentChoiceField(forms.ModelChoiceField):
    """Segments are per project; on the add page the label says which project."""

    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.project.name})"


class PushCampaignForm(forms.ModelForm):
    """Validates through `campaigns.validation`, exactly as the API does.

    `clean()` builds the JSON payload the API would receive (all fields on create,
    only the changed ones on update, like a PATCH), validates it, then runs the
    validator's checks on the whole campaign (`campaign_segment`: a segment of this
    project; `check_campaign`: end_at after scheduled_at, the 4096-byte payload
    limit) so that they, too, show up as form errors rather than after the save.
    The clean values are kept in `campaign_fields` for the service.
    """

    # The validator decides what a valid URL is (same as the API), not Django's URLField.
    image_url = forms.CharField(required=False, max_length=2000, label="Image URL")
    segment = SegmentChoiceField(
        queryset=Segment.objects.select_related("project").order_by("project__name", "name"),
        required=False,
        help_text="Empty means everyone in the project.",
    )

    class Meta:
        model = PushCampaign
        fields = ("project", *WRITABLE)
        labels = {"url": "URL (deep link)", "ttl_seconds": "TTL (seconds)"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.campaign_fields: CampaignFields = {}
        # The validator reports missing text with the API's codes (MISSING_TITLE, ...).
        for name in ("name", "title", "body"):
            if name in self.fields:
                self.fields[name].required = False
        if "name" in self.fields:
            self.fields["name"].help_text = "Defaults to the title."
        if "scheduled_at" in self.fields:
            self.fields["scheduled_at"].help_text = (
                "UTC. With delivery in the user's time zone, the wall-clock time each "
                "user receives it at (e.g. 09:00 everywhere)."
            )
        segment_field = self.fields.get("segment")
        if isinstance(segment_field, SegmentChoiceField) and self.instance.project_id is not None:
            segment_field.queryset = Segment.objects.select_related("project").filter(
                project_id=self.instance.project_id
            )

    def _project(self) -> Project | None:
        if self.instance.project_id is not None:
            return self.instance.project
        project = self.cleaned_data.get("project")
        return project if isinstance(project, Project) else None

    def _api_value(self, name: str) -> Any:
        value = self.cleaned_data.get(name)
        if name == "segment":
            return None if value is None else str(value.pk)
        if name in ("scheduled_at", "end_at"):
            return None if value is None else value.isoformat()
        if name in EMPTY_JSON and value is None:
            return copy.deepcopy(EMPTY_JSON[name])
        return value

    def api_payload(self) -> dict[str, Any]:
        """The request body the API would get for this form submission."""
        names = [n for n in WRITABLE if n in self.fields]
        if not self._state_adding():
            names = [n for n in names if n in self.changed_data]
        payload = {("segment_id" if n == "segment" else n): self._api_value(n) for n in names}
        if self._state_adding() and not payload.get("name"):
            payload.pop("name", None)  # the API defaults it to the title
        return payload

    def _state_adding(self) -> bool:
        return bool(self.instance._state.adding)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned  # field-level errors first; the payload would be incomplete
        payload = self.api_payload()
        if not self._state_adding() and not payload:
            self.campaign_fields = {}
            return cleaned
        try:
            fields = validate_create(payload) if self._state_adding() else validate_update(payload)
            self._check_against_database(fields)
        except ApplicationError as error:
            self._add_application_error(error)
            return cleaned
        self.campaign_fields = fields
        return cleaned

    def _check_against_database(self, fields: CampaignFields) -> None:
        """The service's own checks (`campaigns.validation`), run early so they land
        on the form."""
        project = self._project()
        if project is not None:
            services.campaign_check(
                project=project,
                campaign=None if self._state_adding() else self.instance,
                fields=fields,
            )

    def _add_application_error(self, error: ApplicationError) -> None:
        api_field = str(error.details.get("field", ""))
        target = _form_field_for(api_field) if api_field else None
        message = f"{error.message} ({error.code})"
        self.add_error(target if target in self.fields else None, message)


class CampaignRunInline(admin.TabularInline):
    """Each send, scheduled fire or recurrence, with its own counters (read-only)."""

    model = CampaignRun
    fields = (
        "number",
        "trigger",
        "occurrence",
        "status",
        "targeted",
        "sent",
        "failed",
        "invalid_tokens",
        "skipped",
        "started_at",
        "completed_at",
        "error",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-number",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PushCampaign)
class PushCampaignAdmin(CampaignPageAdmin, admin.ModelAdmin):
    form = PushCampaignForm
    list_display = (
        "name",
        "status_badge",
        "scheduled_at",
        "segment",
        "targeted",
        "sent",
        "failed",
        "invalid",
        "created_at",
    )
    list_filter = ("status", "priority", "project")
    list_select_related = ("segment",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PushCampaign]:
        return with_current_run(super().get_queryset(request))

    search_fields = ("name", "title")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    readonly_fields = BOOKKEEPING
    inlines = (CampaignRunInline,)
    actions = ("send_now", "cancel", "duplicate")

    def get_fieldsets(self, request: HttpRequest, obj: PushCampaign | None = None) -> _FieldsetSpec:
        targeting = TARGETING_FIELDS if obj is not None else ("project", *TARGETING_FIELDS)
        fieldsets: list[tuple[str | _StrPromise | None, _FieldOpts]] = [
            ("Content", {"fields": CONTENT_FIELDS}),
            ("Targeting", {"fields": targeting}),
            ("Schedule", {"fields": SCHEDULE_FIELDS}),
            ("Options", {"fields": OPTION_FIELDS, "classes": ("collapse",)}),
        ]
        if obj is not None:
            fieldsets.insert(0, ("Status", {"fields": ("project", *BOOKKEEPING)}))
            fieldsets.insert(0, ("Results", {"fields": ("results_panel",)}))
        return fieldsets

    def get_readonly_fields(
        self, request: HttpRequest, obj: PushCampaign | None = None
    ) -> tuple[str, ...]:
        return BOOKKEEPING if obj is None else ("project", "results_panel", *BOOKKEEPING)

    def get_urls(self) -> list[URLPattern]:
        return [*self._page_urls(), *super().get_urls()]

    def has_change_permission(self, request: HttpRequest, obj: PushCampaign | None = None) -> bool:
        # Sending, sent, cancelled and failed campaigns are history: view-only.
        if obj is not None and not obj.is_editable:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: PushCampaign | None = None) -> bool:
        if obj is not None and not obj.is_editable:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # Bulk delete would bypass campaign_delete's status rule; delete one at a time.
        actions.pop("delete_selected", None)
        return actions

    # --- columns ---------------------------------------------------------------

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: PushCampaign) -> SafeString:
        colour = STATUS_COLOURS.get(obj.status, "#6c757d")
        return format_html(
            '<span style="background:{};color:#fff;padding:1px 8px;border-radius:8px;'
            'font-size:11px;white-space:nowrap">{}</span>',
            colour,
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
    ) -> None:
        """Run `call` per campaign; a refusal is reported and the others still run."""
        done = 0
        for campaign in queryset.select_related("project").order_by("created_at"):
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

    @admin.action(description="Send now", permissions=["change"])
    def send_now(self, request: HttpRequest, queryset: QuerySet[PushCampaign]) -> None:
        self._each(
            request,
            queryset,
            "Send",
            lambda c: services.campaign_send(project=c.project, campaign_id=c.pk),
        )

    @admin.action(description="Cancel", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[PushCampaign]) -> None:
        self._each(
            request,
            queryset,
            "Cancel",
            lambda c: services.campaign_cancel(project=c.project, campaign_id=c.pk),
        )

    @admin.action(description="Duplicate as a new draft", permissions=["add"])
    def duplicate(self, request: HttpRequest, queryset: QuerySet[PushCampaign]) -> None:
        self._each(
            request, queryset, "Duplicate", lambda c: services.campaign_duplicate(campaign=c)
        )
