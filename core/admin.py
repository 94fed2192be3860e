"""Operator console for projects and API keys.

Credentials are write-only here as everywhere (DESIGN.md, "Data model"): the form
never renders a stored key or service account, only whether one is set, and an
empty secret field keeps the stored value. Whether a pasted secret is valid, and
what a project still lacks, is core.credentials' call. API keys are minted by
`core.services.api_key_create`; the full key is shown once, in the message after
saving, and only its hash is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
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
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from core.credentials import (
    InvalidCredentials,
    apns_status,
    clean_apns_auth_key,
    clean_apns_certificate,
    fcm_status,
    parse_fcm_service_account,
    webpush_status,
)
from core.models import KEY_PREFIX, ApiKey, Project
from core.services import (
    PROJECT_WRITABLE_FIELDS,
    api_key_create,
    api_key_delete,
    api_key_revoke,
    project_create,
    project_delete,
    project_generate_vapid,
    project_update,
)
from core.timefmt import zoned

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


class RevokedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


def masked_key(key: ApiKey) -> str:
    return f"{KEY_PREFIX}{key.prefix}_…" if key.prefix else "—"


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


class ApiKeyInline(admin.TabularInline):
    """The project's keys at a glance; keys are created and revoked on their own page."""

    model = ApiKey
    fields = ("name", "scope", "key", "created", "last_used", "revoked")
    readonly_fields = fields
    created = zoned("created_at", "Created")
    last_used = zoned("last_used_at", "Last used")
    revoked = zoned("revoked_at", "Revoked")
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Key")
    def key(self, obj: ApiKey) -> str:
        return masked_key(obj)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
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
    readonly_fields = ("id", "created", "credentials", "api_keys", "vapid")
    inlines = (ApiKeyInline,)
    fieldsets = (
        (None, {"fields": ("name", "id", "created", "credentials", "api_keys")}),
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
            return HttpResponse(status=403)
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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are immutable once made: create (shown once), then revoke."""

    list_display = (
        "name",
        "project",
        "scope",
        "key",
        "created",
        "last_used",
        "revoked",
    )
    list_filter = (RevokedFilter, "scope", "project")
    list_select_related = ("project",)
    search_fields = ("name", "prefix", "project__name")
    actions = ("revoke_keys",)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("project", "name", "scope")
        return ("project", "name", "scope", "key", "created", "last_used", "revoked")

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> tuple[str, ...]:
        return () if obj is None else ("key", "created", "last_used", "revoked")

    created = zoned("created_at", "Created")
    last_used = zoned("last_used_at", "Last used")
    revoked = zoned("revoked_at", "Revoked")

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # The change page is view-only; revoking is an action (needs change on the model).
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="Key")
    def key(self, obj: ApiKey) -> str:
        return masked_key(obj)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        key, full_key = api_key_create(project=obj.project, name=obj.name, scope=obj.scope)
        adopt_saved(obj, key)
        self.message_user(
            request,
            f"Copy this API key now, it will not be shown again: {full_key}",
            messages.WARNING,
        )

    def delete_model(self, request: HttpRequest, obj: ApiKey) -> None:
        api_key_delete(key=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_delete(key=key)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(key=key)
            revoked += 1
        already = queryset.count() - revoked
        message = f"Revoked {revoked} API key{'s' if revoked != 1 else ''}."
        if already:
            message += f" {already} already revoked."
        self.message_user(request, message, messages.SUCCESS)


# The audit trail's read-only page lives in its own module.
from core import audit_admin  # noqa: E402, F401
