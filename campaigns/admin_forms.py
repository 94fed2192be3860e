"""The campaign composer's form: widgets in, the API's payload out, the API's validator.

`PushCampaignForm` builds the JSON body the API would receive from its widgets
(campaigns/widgets.py) and runs `campaigns.validation` on it. Each field is validated
on its own first, so every refused field shows its error at once next to its widget;
then the whole payload and the service's own checks run (`campaign_check`: segment
ownership, end_at after scheduled_at, the 4096-byte payload). An error's API path
(`targeting.countries.include`, `actions[0].title`) goes on the widget too, for
composer.js to mark the row it names.
"""

from __future__ import annotations

import copy
import json
import re
import zoneinfo
from datetime import UTC, datetime
from typing import Any

from django import forms

from campaigns import services
from campaigns.models import PushCampaign
from campaigns.validation import CampaignFields, schedules, validate_create, validate_update
from campaigns.widgets import (
    CommaListField,
    DurationField,
    JsonEditorWidget,
    MillisecondsListField,
    PlatformsField,
    QuietHoursField,
    RecurrenceField,
    timezone_choices,
)
from core import access
from core.errors import ApplicationError, InvalidInput
from core.models import Project
from segments.models import Segment

# Form fields that are written through the validator, in form order. `segment`
# is sent as the API's `segment_id`.
CONTENT_FIELDS: tuple[str, ...] = (
    "name",
    "title",
    "body",
    "localizations",
    "image_url",
    "icon",
    "web_badge",
    "url",
    "actions",
    "data",
    "silent",
    "sound",
    "badge",
    "vibrate",
    "require_interaction",
    "renotify",
    "tag",
)
TARGETING_FIELDS: tuple[str, ...] = ("segment", "platforms", "targeting")
SCHEDULE_FIELDS: tuple[str, ...] = (
    "scheduled_at",
    "end_at",
    "recurrence",
    "quiet_hours",
    "deliver_in_user_timezone",
    "local_time_missed",
    "throttle_per_minute",
)
OPTION_FIELDS: tuple[str, ...] = ("priority", "ttl_seconds", "collapse_key", "tags")
GOAL_FIELDS: tuple[str, ...] = ("goals",)
WRITABLE = CONTENT_FIELDS + TARGETING_FIELDS + SCHEDULE_FIELDS + GOAL_FIELDS + OPTION_FIELDS
# Not an API field: the zone scheduled_at and end_at are picked in.
SCHEDULE_ZONE = "schedule_timezone"
# What an empty JSON input means for each JSON field (the model's default).
EMPTY_JSON: dict[str, Any] = {
    "data": {},
    "localizations": {},
    "actions": [],
    "targeting": {},
    "goals": [],
}
DATA_EXAMPLE = '{"screen": "offers", "offer_id": 42}'
GOAL_FILTER_EXAMPLE = '{"attr": "value", "op": "gte", "value": 20}'


def form_field_for(api_field: str) -> str:
    """`segment_id` -> `segment`; `actions[0].title` / `recurrence.cron` -> the root."""
    root = re.split(r"[.\[]", api_field, maxsplit=1)[0]
    return "segment" if root == "segment_id" else root


class SegmentChoiceField(forms.ModelChoiceField):
    """Segments are per project; on the add page the label says which project."""

    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.project.name})"


def _segment_options(segments: Any) -> list[dict[str, str]]:
    return [{"id": str(s.pk), "name": s.name, "project": str(s.project_id)} for s in segments]


def _wall_clock(value: datetime, zone: str) -> datetime:
    """A stored instant as its wall clock in `zone`, labelled UTC: what the admin's
    split date/time widget (which shows the current zone, UTC) must display."""
    return value.astimezone(zoneinfo.ZoneInfo(zone)).replace(tzinfo=UTC)


def _in_zone(value: datetime, zone: str) -> datetime:
    """The widget's date and time (parsed as UTC) read as a wall clock in `zone`."""
    try:
        tz = zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        tz = zoneinfo.ZoneInfo("UTC")
    return value.astimezone(UTC).replace(tzinfo=tz, fold=0)


class PushCampaignForm(forms.ModelForm):
    """The composer: every field a widget, validated through `campaigns.validation`.

    `clean()` builds the JSON payload the API would receive (all fields on create,
    only the changed ones on update, like a PATCH), validates each field, then the
    whole, then runs the service's checks on the whole campaign, so that they, too,
    show up as form errors rather than after the save. The clean values are kept in
    `campaign_fields` for the service.
    """

    # The validator decides what a valid URL is (same as the API), not Django's URLField.
    image_url = forms.CharField(
        required=False,
        max_length=2000,
        label="Image URL",
        widget=forms.URLInput(attrs={"class": "vURLField", "placeholder": "https://…/banner.png"}),
    )
    icon = forms.CharField(
        required=False,
        max_length=2000,
        label="Web icon URL",
        help_text="The icon web browsers show beside the text (web push and FCM web). "
        "Android apps use their own icon resource.",
        widget=forms.URLInput(attrs={"class": "vURLField", "placeholder": "https://…/icon.png"}),
    )
    web_badge = forms.CharField(
        required=False,
        max_length=2000,
        label="Web badge image URL",
        help_text="A small monochrome image browsers show in the status bar (Android "
        "Chrome); the iOS count is Badge below.",
        widget=forms.URLInput(attrs={"class": "vURLField", "placeholder": "https://…/badge.png"}),
    )
    vibrate = MillisecondsListField(
        required=False,
        label="Vibration pattern",
        help_text="Milliseconds, vibrate then pause, e.g. 200, 100, 200 (at most 10, each "
        "0-10000): web and Android.",
        widget=forms.TextInput(attrs={"placeholder": "200, 100, 200", "size": "24"}),
    )
    tag = forms.CharField(
        required=False,
        max_length=64,
        label="Notification tag",
        help_text="Web and Android: a newer notification with the same tag replaces the one "
        "shown. Empty: the collapse key (Options).",
    )
    url = forms.CharField(
        required=False,
        max_length=2000,
        label="URL (deep link)",
        help_text="Opened on tap: https://… or an app link such as myapp://offers.",
        widget=forms.TextInput(attrs={"class": "vURLField", "placeholder": "myapp://offers"}),
    )
    segment = SegmentChoiceField(
        queryset=Segment.objects.select_related("project").order_by("project__name", "name"),
        required=False,
        help_text="Empty means everyone in the project.",
    )
    platforms = PlatformsField()
    tags = CommaListField(
        required=False, help_text="Comma-separated, e.g. spring, promo (at most 20)."
    )
    quiet_hours = QuietHoursField(
        help_text="In each user's own time zone (the project's zone when unknown); "
        "empty: the project's default quiet hours."
    )
    recurrence = RecurrenceField()
    ttl_seconds = DurationField(
        label="Time to live", help_text="How long providers keep trying; empty: their default."
    )
    schedule_timezone = forms.ChoiceField(
        label="Time zone",
        required=False,
        choices=timezone_choices,
        help_text="The zone of the scheduled and end times above.",
    )

    class Media:
        css = {"all": ("campaigns/composer.css",)}
        js = ("campaigns/composer.js",)

    class Meta:
        model = PushCampaign
        fields = ("project", *WRITABLE)
        widgets = {
            "localizations": JsonEditorWidget("localizations"),
            "actions": JsonEditorWidget("actions"),
            "goals": JsonEditorWidget("goals", {"filter_example": GOAL_FILTER_EXAMPLE}),
            "data": forms.Textarea(
                attrs={"rows": 3, "class": "vLargeTextField", "placeholder": DATA_EXAMPLE}
            ),
        }
        help_texts = {
            "data": f"Custom key/values for the app, as a JSON object, e.g. {DATA_EXAMPLE}.",
            "localizations": "One row per language: title, body, image and button titles; "
            "what a row leaves empty comes from the base language's row (pt for pt-BR), then "
            "from the fields above.",
            "actions": "Up to 3 buttons; an icon is an http(s) image URL (web shows it, "
            "apps read it from the actions key).",
            "require_interaction": "Web: the notification stays until the user clicks or "
            "dismisses it.",
            "renotify": "Web: sound and vibrate again when this replaces a notification with "
            "the same tag (needs a tag or a collapse key).",
            "silent": "A data-only push the app handles in the background: nothing is "
            "shown, so no sound, badge, image or buttons (the title and body name the "
            "campaign but are not sent). Apple delivers it at low priority; choose priority "
            "normal for Android too.",
            "goals": "Up to 5 events the push is meant to lead to; a user converts when "
            "the event (matching its property filter, a segment rule over the event's "
            "properties, e.g. " + GOAL_FILTER_EXAMPLE + ") comes within the window after "
            "a push was sent to them. The primary goal is the campaign's conversion rate.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.campaign_fields: CampaignFields = {}
        # Who is composing (PushCampaignAdmin.get_form sets it): may they schedule?
        self.principal: Any = getattr(self, "principal", None)
        # The validator reports missing text with the API's codes (MISSING_TITLE, ...).
        for name in ("name", "title", "body"):
            if name in self.fields:
                self.fields[name].required = False
        if "name" in self.fields:
            self.fields["name"].help_text = "Defaults to the title."
        # Django's split date/time widget prints "Date:" / "Time:" without <label>s.
        for name, label in (("scheduled_at", "Scheduled"), ("end_at", "End")):
            widget = self.fields[name].widget if name in self.fields else None
            for part, sub in zip(("date", "time"), getattr(widget, "widgets", ()), strict=False):
                sub.attrs["aria-label"] = f"{label} {part}"
        if "scheduled_at" in self.fields:
            self.fields["scheduled_at"].help_text = (
                "In the time zone below. With delivery in the user's time zone, the "
                "wall-clock time each user receives it at (e.g. 09:00 everywhere)."
            )
        project = self.instance.project if self.instance.project_id is not None else None
        segments = Segment.objects.select_related("project").order_by("name")
        visible = self._visible_projects()
        if visible is not None:  # only the composer's own projects' segments (and zones)
            segments = segments.filter(project__in=visible)
        self._lock_schedule_unless_allowed()
        if project is not None:
            segments = segments.filter(project=project)
        segment_field = self.fields.get("segment")
        if isinstance(segment_field, SegmentChoiceField) and (
            project is not None or visible is not None
        ):
            segment_field.queryset = segments
        if "targeting" in self.fields:
            self.fields["targeting"].widget = JsonEditorWidget(
                "targeting", {"segments": _segment_options(segments)}
            )
            self.fields[
                "targeting"
            ].help_text = "Every condition must hold: include lists pick, exclude lists remove."
        self._set_schedule_zone(project)

    # --- who composes ------------------------------------------------------------------

    def _visible_projects(self) -> list[Any] | None:
        """The projects the composing user may see (None: all; no user: all, as in tests
        that build the form alone)."""
        if self.principal is None:
            return None
        return access.projects_where(self.principal)

    def _lock_schedule_unless_allowed(self) -> None:
        """A user who may schedule in none of their projects (editors) gets the schedule
        fields read-only, saying why, rather than an error after filling them in; where
        the role differs by project, saving checks the chosen one (clean)."""
        if self.principal is None or access.may_anywhere(self.principal, access.SEND_CAMPAIGNS):
            return
        for name in ("scheduled_at", "end_at", "recurrence"):
            field = self.fields.get(name)
            if field is not None:
                field.disabled = True
                field.help_text = (
                    "Scheduling is the sender's role: save the draft and ask a sender "
                    "of this project to schedule or send it."
                )

    # --- the schedule's zone ----------------------------------------------------------

    def _default_zone(self, project: Project | None) -> str:
        if self.instance.recurrence and self.instance.recurrence.get("timezone"):
            return str(self.instance.recurrence["timezone"])
        if project is None:
            initial = self.initial.get("project")
            project = Project.objects.filter(pk=initial).first() if initial else None
        return project.default_timezone if project is not None else "UTC"

    def _set_schedule_zone(self, project: Project | None) -> None:
        if SCHEDULE_ZONE not in self.fields:
            return
        zone = self._default_zone(project)
        self.initial[SCHEDULE_ZONE] = zone
        visible = self._visible_projects()
        projects = (
            Project.objects.all() if visible is None else Project.objects.filter(pk__in=visible)
        )
        zones = dict(projects.values_list("pk", "default_timezone"))
        self.fields[SCHEDULE_ZONE].widget.attrs["data-project-zones"] = _json_map(zones)
        for name in ("scheduled_at", "end_at"):
            stored = getattr(self.instance, name, None)
            if name in self.fields and stored is not None:
                self.initial[name] = _wall_clock(stored, zone)

    def _zone(self) -> str:
        return str(self.cleaned_data.get(SCHEDULE_ZONE) or "UTC")

    # --- the API payload -------------------------------------------------------------

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
            return None if value is None else _in_zone(value, self._zone()).isoformat()
        if name in EMPTY_JSON and value is None:
            return copy.deepcopy(EMPTY_JSON[name])
        return value

    def _changed(self) -> set[str]:
        changed = set(self.changed_data)
        if SCHEDULE_ZONE in changed:  # the same wall clock in another zone is another time
            changed |= {n for n in ("scheduled_at", "end_at") if self.cleaned_data.get(n)}
        return changed

    def api_payload(self) -> dict[str, Any]:
        """The request body the API would get for this form submission."""
        names = [n for n in WRITABLE if n in self.fields]
        if not self._state_adding():
            changed = self._changed()
            names = [n for n in names if n in changed]
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
        # Each field alone first, so that every refused field shows its error at once.
        refused = False
        for name, value in payload.items():
            try:
                validate_update({name: value})
            except ApplicationError as error:
                self._add_application_error(error)
                refused = True
        if refused:
            return cleaned
        try:
            fields = validate_create(payload) if self._state_adding() else validate_update(payload)
            self._check_against_database(fields)
            if schedules(fields, update=not self._state_adding()):
                # Scheduling is the sender's (core/access.py), as on the API.
                access.require(self.principal, access.SEND_CAMPAIGNS, self._project())
        except ApplicationError as error:
            self._add_application_error(
                error
                if error.code != "FORBIDDEN"
                else InvalidInput(error.message, details={"field": "scheduled_at"})
            )
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
        target = form_field_for(api_field) if api_field else None
        message = f"{error.message} ({error.code})"
        if target in self.fields:
            # composer.js marks the row or input the path names (e.g. actions[0].title).
            self.fields[target].widget.attrs["data-error-path"] = api_field
            self.add_error(target, message)
        else:
            self.add_error(None, message)


def _json_map(mapping: dict[Any, Any]) -> str:
    return json.dumps({str(k): str(v) for k, v in mapping.items()})
