"""Operator console for projects and API keys.

Credentials are write-only here as everywhere (DESIGN.md, "Data model"): the form
never renders a stored key or service account, only whether one is set, and an
empty secret field keeps the stored value. Whether a pasted secret is valid, and
what a project still lacks, is core.credentials' call. API keys are minted by
`core.services.api_key_create` and replaced by `api_key_rotate`; the full key is
shown once, in the message after saving or rotating, and only its hash is stored.
A key's status (active, expiring soon, expired, revoked) is `ApiKey.state_at`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections, models
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from core import access
from core.access import ROLE_GROUP_NAMES
from core.admin_site import ProjectScopedAdmin, ProjectScopedInline
from core.credentials import (
    InvalidCredentials,
    apns_status,
    clean_apns_auth_key,
    clean_apns_certificate,
    fcm_status,
    parse_fcm_service_account,
    webpush_status,
)
from core.errors import ApplicationError
from core.models import (
    KEY_PREFIX,
    ApiKey,
    KeyState,
    Project,
    ProjectMembership,
    api_key_state_q,
)
from core.services import (
    DEFAULT_ROTATION_GRACE,
    PROJECT_WRITABLE_FIELDS,
    api_key_create,
    api_key_delete,
    api_key_revoke,
    api_key_rotate,
    project_create,
    project_delete,
    project_generate_vapid,
    project_member_remove,
    project_member_set,
    project_update,
)
from core.timefmt import EMPTY, format_time, zoned

SECRET_WIDGET_ATTRS = {"rows": 4, "cols": 80, "autocomplete": "off", "spellcheck": "false"}
T = TypeVar("T")


def adopt_saved(target: models.Model, saved: models.Model) -> None:
    """Make the admin's unsaved `target` mirror the row a service saved.

    ModelAdmin keeps using the object it built from the form (for the redirect,
    the history entry and the success message), while the write went through a
    service that created or reloaded its own instance.
    """
    for field in saved._meta.concrete_fields:
        setattr(target, field.attname, getattr(saved, field.attname))
    target._state.adding = False
    target._state.db = saved._state.db


class EstimatedCountPaginator(Paginator):
    """Exact counts, except an unfiltered list of a big PostgreSQL table.

    `show_full_result_count = False` only drops the second COUNT(*); the page
    itself still counts its (unfiltered) list, which takes seconds on tens of
    millions of rows. Above `EXACT_UP_TO` rows the planner's estimate is close
    enough for a page count.
    """

    EXACT_UP_TO = 100_000

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if isinstance(object_list, QuerySet) and not object_list.query.where:
            database = connections[object_list.db]
            if database.vendor == "postgresql":
                with database.cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                        [object_list.model._meta.db_table],
                    )
                    row = cursor.fetchone()
                if row is not None and row[0] > self.EXACT_UP_TO:
                    return int(row[0])
        return int(super().count)


class KeyStateFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(state.value, str(state.label)) for state in KeyState]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        value = self.value()
        if value is not None and value in KeyState.values:
            return queryset.filter(api_key_state_q(KeyState(value), timezone.now()))
        return queryset


def masked_key(key: ApiKey) -> str:
    return f"{KEY_PREFIX}{key.prefix}_…" if key.prefix else "—"


class ApiKeyColumns:
    """The key columns the key list, the key page and the project page's inline share."""

    created = zoned("created_at", "Created")
    revoked = zoned("revoked_at", "Revoked")

    @admin.display(description="Key")
    def key(self, obj: ApiKey) -> str:
        return masked_key(obj)

    @admin.display(description="Scope", ordering="scope")
    def scope_name(self, obj: ApiKey) -> str:
        """The short name (admin, client); the key's page explains it."""
        return obj.scope

    @admin.display(description="Status")
    def status(self, obj: ApiKey) -> SafeString | str:
        if obj.pk is None:
            return EMPTY
        state = obj.state_at()
        return format_html('<span data-key-state="{}">{}</span>', state.value, state.label)

    @admin.display(description="Expires", ordering="expires_at")
    def expires(self, obj: ApiKey) -> str:
        return "Never" if obj.expires_at is None else format_time(obj.expires_at)

    @admin.display(description="Last used", ordering="last_used_at")
    def last_used(self, obj: ApiKey) -> str:
        """When, and from which client IP ("no IP": MCP over stdio)."""
        if obj.last_used_at is None:
            return EMPTY
        where = f"from {obj.last_used_ip}" if obj.last_used_ip else "(no IP)"
        return f"{format_time(obj.last_used_at)} {where}"


def _field_error(clean: Callable[[str], T], value: str) -> T:
    """Run a core.credentials cleaner; its refusal becomes the form field's error."""
    try:
        return clean(value)
    except InvalidCredentials as exc:
        raise forms.ValidationError(exc.message) from exc


def _secret_field(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        strip=True,
        help_text=help_text,
        widget=forms.Textarea(attrs=SECRET_WIDGET_ATTRS),
    )


class ProjectAdminForm(forms.ModelForm):
    """Project settings plus write-only credential inputs.

    The secret inputs are not model fields, so Django never fills them from the
    stored row; `credential_changes()` says which stored secrets to overwrite.
    """

    set_apns_auth_key = _secret_field(
        "APNs auth key (.p8)", "Paste the whole .p8 file. Leave empty to keep the stored key."
    )
    set_apns_certificate = _secret_field(
        "APNs certificate (PEM)",
        "Certificate and private key, PEM. Leave empty to keep the stored certificate.",
    )
    clear_apns_secrets = forms.BooleanField(
        label="Remove the stored APNs key and certificate", required=False
    )
    set_fcm_service_account = _secret_field(
        "FCM service account (JSON)",
        "The service-account JSON file from Firebase. Leave empty to keep the stored one.",
    )
    clear_fcm_service_account = forms.BooleanField(
        label="Remove the stored FCM service account", required=False
    )

    class Meta:
        model = Project
        fields = ("name",)
        labels = {
            "apns_team_id": "APNs team id",
            "apns_key_id": "APNs key id",
            "apns_topic": "APNs topic",
            "apns_use_sandbox": "Use the APNs sandbox",
            "apns_endpoint": "APNs endpoint",
            "apns_ca_file": "APNs CA file",
            "fcm_endpoint": "FCM endpoint",
            "fcm_ca_file": "FCM CA file",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stored = {
            "set_apns_auth_key": bool(self.instance.apns_auth_key),
            "set_apns_certificate": bool(self.instance.apns_certificate),
            "set_fcm_service_account": bool(self.instance.fcm_service_account),
        }
        for name, is_set in stored.items():
            if name in self.fields:
                state = "A value is stored." if is_set else "Nothing stored yet."
                self.fields[name].help_text = f"{state} {self.fields[name].help_text}"

    # The rules are core.credentials'; the form only puts a refusal next to its field.
    def clean_set_apns_auth_key(self) -> str:
        text: str = self.cleaned_data["set_apns_auth_key"]
        return _field_error(clean_apns_auth_key, text) if text else text

    def clean_set_apns_certificate(self) -> str:
        text: str = self.cleaned_data["set_apns_certificate"]
        return _field_error(clean_apns_certificate, text) if text else text

    def clean_set_fcm_service_account(self) -> dict[str, Any] | None:
        text: str = self.cleaned_data["set_fcm_service_account"]
        return _field_error(parse_fcm_service_account, text) if text else None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("clear_apns_secrets") and (
            cleaned.get("set_apns_auth_key") or cleaned.get("set_apns_certificate")
        ):
            raise forms.ValidationError("Either paste new APNs credentials or remove them.")
        if cleaned.get("clear_fcm_service_account") and cleaned.get("set_fcm_service_account"):
            raise forms.ValidationError("Either paste a new service account or remove it.")
        return cleaned

    def credential_changes(self) -> dict[str, Any]:
        """Stored secrets to overwrite: only those filled in or explicitly removed."""
        data = self.cleaned_data
        changes: dict[str, Any] = {}
        if data.get("clear_apns_secrets"):
            changes.update(apns_auth_key="", apns_certificate="")
        if data.get("set_apns_auth_key"):
            changes["apns_auth_key"] = data["set_apns_auth_key"]
        if data.get("set_apns_certificate"):
            changes["apns_certificate"] = data["set_apns_certificate"]
        if data.get("clear_fcm_service_account"):
            changes["fcm_service_account"] = {}
        if data.get("set_fcm_service_account"):
            changes["fcm_service_account"] = data["set_fcm_service_account"]
        return changes


class ApiKeyInline(ApiKeyColumns, ProjectScopedInline, admin.TabularInline):
    """The project's keys at a glance; keys are created, rotated and revoked on their
    own page."""

    model = ApiKey
    fields = ("name", "scope_name", "key", "status", "expires", "last_used")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _member_choices(field: str, kwargs: dict[str, Any]) -> None:
    """A membership's choices: active staff accounts, and the four role groups."""
    if field == "user":
        kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True)
    elif field == "role":
        kwargs["queryset"] = Group.objects.filter(name__in=ROLE_GROUP_NAMES).order_by("id")


ADD_MEMBERS = "core.add_projectmembership"


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdmin):
    project_field = "pk"
    form = ProjectAdminForm
    list_display = (
        "name",
        "apns_configured",
        "fcm_configured",
        "webpush_configured",
        "created",
        "id",
    )
    search_fields = ("name",)
    readonly_fields = (
        "id",
        "created",
        "credentials",
        "api_keys",
        "members",
        "members_managed",
        "vapid",
    )
    inlines = (ApiKeyInline,)
    fieldsets = (
        (None, {"fields": ("name", "id", "created", "credentials", "api_keys", "members")}),
        (
            "APNs (iOS)",
            {
                "fields": (
                    "apns_team_id",
                    "apns_key_id",
                    "set_apns_auth_key",
                    "set_apns_certificate",
                    "clear_apns_secrets",
                    "apns_topic",
                    "apns_use_sandbox",
                    "apns_endpoint",
                    "apns_ca_file",
                )
            },
        ),
        (
            "FCM (Android, web)",
            {
                "fields": (
                    "set_fcm_service_account",
                    "clear_fcm_service_account",
                    "fcm_endpoint",
                    "fcm_ca_file",
                )
            },
        ),
        ("Web push (VAPID)", {"fields": ("vapid",)}),
        (
            "Campaign defaults",
            {
                "fields": (
                    "default_timezone",
                    "default_quiet_hours",
                    "default_throttle_per_minute",
                    "frequency_cap_per_day",
                )
            },
        ),
        (
            "After a worker crash",
            {
                "fields": ("delivery_guarantee",),
                "description": "Pushes a crashed worker had in flight: leave them unknown "
                "(at most once) or send them again with the same collapse id, so a device "
                "that got the first one replaces it (at least once).",
            },
        ),
    )

    created = zoned("created_at", "Created")

    @admin.display(description="APNs", boolean=True)
    def apns_configured(self, obj: Project) -> bool:
        return obj.has_apns_credentials

    @admin.display(description="FCM", boolean=True)
    def fcm_configured(self, obj: Project) -> bool:
        return obj.has_fcm_credentials

    @admin.display(description="Web push", boolean=True)
    def webpush_configured(self, obj: Project) -> bool:
        return obj.has_webpush_credentials

    @admin.display(description="Credentials")
    def credentials(self, obj: Project) -> SafeString:
        return format_html_join(
            mark_safe("<br>"),  # a constant, nothing to escape
            "{}: {}",
            [
                ("APNs", apns_status(obj)),
                ("FCM", fcm_status(obj)),
                ("Web push", webpush_status(obj)),
            ],
        )

    @admin.display(description="VAPID keys")
    def vapid(self, obj: Project) -> SafeString | str:
        """The public key and subject (the private key is never shown) and the button."""
        if obj.pk is None:
            return "Save the project first."
        url = reverse("admin:core_project_vapid", args=[obj.pk])
        if not obj.webpush_vapid_public_key:
            return format_html(
                'No keys yet. <a class="button" href="{}">Generate VAPID keys</a>', url
            )
        return format_html(
            'Public key: <code data-field="vapid-public-key">{}</code><br>Subject: {}<br>'
            '<a class="button" href="{}">Generate new VAPID keys</a>',
            obj.webpush_vapid_public_key,
            obj.webpush_vapid_subject or "(none)",
            url,
        )

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<path:object_id>/vapid/",
                self.admin_site.admin_view(self.vapid_view),
                name="core_project_vapid",
            )
        ]
        return [*own, *super().get_urls()]

    def vapid_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the form (with a warning when keys exist); POST: generate or rotate."""
        project = self.get_object(request, object_id)
        if project is None:
            self.message_user(request, "Project not found.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:core_project_changelist"))
        if not self.has_change_permission(request, project):
            raise PermissionDenied
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        change_url = reverse("admin:core_project_change", args=[project.pk])
        subject = project.webpush_vapid_subject
        error = ""
        if request.method == "POST":
            subject = request.POST.get("subject", "")
            try:
                _, rotated = project_generate_vapid(project=project, subject=subject)
            except InvalidCredentials as exc:
                error = exc.message
            else:
                done = "Rotated" if rotated else "Generated"
                note = " Existing subscriptions must subscribe again." if rotated else ""
                self.message_user(
                    request, f"{done} the VAPID keys of {project.name}.{note}", messages.SUCCESS
                )
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"VAPID keys of {project.name}",
            "opts": self.opts,
            "project": project,
            "has_keys": bool(project.webpush_vapid_private_key),
            "subject": subject,
            "error": error,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/core/project/vapid.html", context)

    @admin.display(description="API keys")
    def api_keys(self, obj: Project) -> SafeString | str:
        if obj.pk is None:
            return "Save the project first."
        return format_html(
            '<a href="{}?project={}">Create an API key</a> (the key is shown once)',
            reverse("admin:core_apikey_add"),
            obj.pk,
        )

    def get_fieldsets(self, request: HttpRequest, obj: Project | None = None) -> Any:
        """Project admins get the links that manage members; others only the list."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or not access.principal_may(request.user, ADD_MEMBERS, obj):
            return fieldsets
        return [
            (
                name,
                {
                    **opts,
                    "fields": tuple(
                        "members_managed" if f == "members" else f for f in opts["fields"]
                    ),
                },
            )
            for name, opts in fieldsets
        ]

    @admin.display(description="Members")
    def members(self, obj: Project) -> SafeString | str:
        """Who works here and as what (core/access.py)."""
        if obj.pk is None:
            return "Save the project first."
        memberships = obj.memberships.select_related("user", "role").order_by("user__username")
        rows = format_html_join(
            "",
            "<li>{} — {}</li>",
            ((m.user.get_username(), access.role_of_group(m.role.name)) for m in memberships),
        )
        if not rows:
            return format_html("<p>{}</p>", "No members yet (superusers see every project).")
        return format_html('<ul class="herald-members">{}</ul>', rows)

    @admin.display(description="Members")
    def members_managed(self, obj: Project) -> SafeString | str:
        """The list, and the links that manage it (for those who may)."""
        return format_html(
            '{}<a href="{}?project={}">Add a member</a> · '
            '<a href="{}?project__id__exact={}">Manage members</a>',
            self.members(obj),
            reverse("admin:core_projectmembership_add"),
            obj.pk,
            reverse("admin:core_projectmembership_changelist"),
            obj.pk,
        )

    def save_model(
        self, request: HttpRequest, obj: Project, form: ProjectAdminForm, change: bool
    ) -> None:
        form_fields = PROJECT_WRITABLE_FIELDS & set(form.cleaned_data)
        if change:
            changed = {
                name: form.cleaned_data[name] for name in form_fields & set(form.changed_data)
            }
            project_update(project=obj, fields={**changed, **form.credential_changes()})
            return
        project = project_create(name=form.cleaned_data["name"])
        settings = {name: form.cleaned_data[name] for name in form_fields - {"name"}}
        project_update(project=project, fields={**settings, **form.credential_changes()})
        adopt_saved(obj, project)

    def delete_model(self, request: HttpRequest, obj: Project) -> None:
        project_delete(project=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        for project in queryset:
            project_delete(project=project)


EXPIRES_IN_CHOICES = [
    ("", "Never"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In 365 days"),
]

GRACE_CHOICES = [
    ("0", "Revoke the old key now"),
    ("1", "1 hour"),
    (str(int(DEFAULT_ROTATION_GRACE.total_seconds() // 3600)), "24 hours"),
    ("168", "7 days"),
]


class ApiKeyAddForm(forms.ModelForm):
    """A new key: project, name, scope and when it expires (never, or days from now)."""

    expires_in = forms.ChoiceField(
        label="Expires",
        choices=EXPIRES_IN_CHOICES,
        required=False,
        help_text="After this the key answers 401 like a revoked one. Rotating it "
        "gives the new key the same lifetime.",
    )

    class Meta:
        model = ApiKey
        fields = ("project", "name", "scope")

    def expires_at(self) -> Any:
        days = self.cleaned_data.get("expires_in")
        return timezone.now() + timedelta(days=int(days)) if days else None


@admin.register(ApiKey)
class ApiKeyAdmin(ApiKeyColumns, ProjectScopedAdmin):
    """Keys are immutable once made: create (shown once), rotate, revoke."""

    # Created and revoked times are on the key's page; the status says revoked.
    list_display = ("name", "project", "scope_name", "key", "status", "expires", "last_used")
    list_filter = (KeyStateFilter, "scope", "project")
    list_select_related = ("project",)
    search_fields = ("name", "prefix", "project__name")
    actions = ("revoke_keys",)
    DETAIL_FIELDS = (
        "project",
        "name",
        "scope",
        "key",
        "status",
        "created",
        "expires",
        "last_used",
        "revoked",
        "rotation",
    )

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("project", "name", "scope", "expires_in")
        return self.DETAIL_FIELDS

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> tuple[str, ...]:
        return () if obj is None else self.DETAIL_FIELDS

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # The change page is view-only; revoking is an action (needs change on the model).
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="Rotation")
    def rotation(self, obj: ApiKey) -> SafeString | str:
        """Its successor, the key it replaced, and the button while it can be rotated."""
        parts = []
        if obj.replaced_by_id is not None:
            parts.append(
                format_html(
                    'Replaced by <a href="{}">{}</a>.',
                    reverse("admin:core_apikey_change", args=[obj.replaced_by_id]),
                    obj.replaced_by,
                )
            )
        replaces = ApiKey.objects.filter(replaced_by=obj).first()
        if replaces is not None:
            parts.append(
                format_html(
                    'Replaces <a href="{}">{}</a>.',
                    reverse("admin:core_apikey_change", args=[replaces.pk]),
                    replaces,
                )
            )
        if obj.replaced_by_id is None and obj.is_live():
            parts.append(
                format_html(
                    '<a class="button" data-action="rotate-key" href="{}">Rotate this key</a>',
                    reverse("admin:core_apikey_rotate", args=[obj.pk]),
                )
            )
        if not parts:
            return EMPTY
        return format_html_join(mark_safe(" "), "{}", ((part,) for part in parts))

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        key, full_key = api_key_create(
            project=obj.project, name=obj.name, scope=obj.scope, expires_at=form.expires_at()
        )
        adopt_saved(obj, key)
        self.message_user(
            request,
            f"Copy this API key now, it will not be shown again: {full_key}",
            messages.WARNING,
        )

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<path:object_id>/rotate/",
                self.admin_site.admin_view(self.rotate_view),
                name="core_apikey_rotate",
            )
        ]
        return [*own, *super().get_urls()]

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what rotating does, and the grace to give the old key; POST: rotate,
        show the new key once (a message on the new key's page) and the old key's end."""
        key = self.get_object(request, object_id)
        if key is None:
            self.message_user(request, "API key not found.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:core_apikey_changelist"))
        if not access.principal_may(request.user, access.CHANGE_API_KEYS, key):
            raise PermissionDenied
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        key_url = reverse("admin:core_apikey_change", args=[key.pk])
        error = ""
        grace = request.POST.get("grace_hours", GRACE_CHOICES[2][0])
        if request.method == "POST":
            try:
                hours = int(grace)
                if grace not in {value for value, _ in GRACE_CHOICES}:
                    raise ValueError(grace)
            except ValueError:
                error = "Choose how long the old key keeps working."
            else:
                try:
                    new_key, full_key = api_key_rotate(key=key, grace=timedelta(hours=hours))
                except ApplicationError as exc:
                    error = exc.message
                else:
                    self.message_user(
                        request,
                        f"Copy this API key now, it will not be shown again: {full_key}",
                        messages.WARNING,
                    )
                    self.message_user(request, self._old_key_note(key), messages.INFO)
                    return HttpResponseRedirect(
                        reverse("admin:core_apikey_change", args=[new_key.pk])
                    )
        state = key.state_at()
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rotate {key}",
            "opts": self.opts,
            "key": key,
            "key_url": key_url,
            "state": state,
            "rotatable": key.is_live() and key.replaced_by_id is None,
            "expires": self.expires(key),
            "grace_choices": GRACE_CHOICES,
            "grace": grace,
            "error": error,
        }
        return TemplateResponse(request, "admin/core/apikey/rotate.html", context)

    @staticmethod
    def _old_key_note(old: ApiKey) -> str:
        if old.revoked_at is not None:
            return f"The old key {masked_key(old)} was revoked."
        return (
            f"The old key {masked_key(old)} keeps working until "
            f"{format_time(old.expires_at)}; switch your clients before then."
        )

    def delete_model(self, request: HttpRequest, obj: ApiKey) -> None:
        api_key_delete(key=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in self.rows_allowed(request, queryset, "delete"):
            api_key_delete(key=key)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        queryset = self.rows_allowed(request, queryset, "change")
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(key=key)
            revoked += 1
        already = queryset.count() - revoked
        message = f"Revoked {revoked} API key{'s' if revoked != 1 else ''}."
        if already:
            message += f" {already} already revoked."
        self.message_user(request, message, messages.SUCCESS)


@admin.register(ProjectMembership)
class ProjectMembershipAdmin(ProjectScopedAdmin):
    """Who may do what in which project (core/access.py). Project admins add existing
    staff accounts to their project; the accounts themselves are the superuser's."""

    list_display = ("user", "project", "role", "created")
    list_filter = ("role", "project")
    list_select_related = ("user", "project", "role")
    search_fields = ("user__username", "project__name")
    fields = ("project", "user", "role")
    created = zoned("created_at", "Added")

    def get_readonly_fields(
        self, request: HttpRequest, obj: ProjectMembership | None = None
    ) -> tuple[str, ...]:
        # A membership is a (project, user) pair: change its role, or remove it.
        return () if obj is None else ("project", "user")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        _member_choices(db_field.name, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: ProjectMembership, form: Any, change: bool
    ) -> None:
        role = access.role_of_group(obj.role.name) or ""
        saved = project_member_set(project=obj.project, user=obj.user, role=role)
        adopt_saved(obj, saved)

    def delete_model(self, request: HttpRequest, obj: ProjectMembership) -> None:
        project_member_remove(membership=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ProjectMembership]) -> None:
        for membership in self.rows_allowed(request, queryset, "delete"):
            project_member_remove(membership=membership)


# The audit trail's read-only page lives in its own module.
from core import audit_admin  # noqa: E402, F401
