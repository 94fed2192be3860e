"""The console's admin site: Herald's branding, its dashboard and what operators see.

`HeraldAdminConfig` (in INSTALLED_APPS) makes this the default site, so every app's
`@admin.register` lands here and `admin.site` is this instance.

- Sections: the app list reads in the order an operator works (Campaigns, Segments &
  users, Devices & deliveries, Projects & keys, System). Celery beat's models
  (periodic tasks with the sweeper, crontabs, intervals, clocked, solar) are the
  system's, not an operator's: they are superuser-only (hidden from staff, 403 on
  their URLs), under System with the login accounts.
- Core imports no other app, so the dashboard and the console views other apps own
  are plugged in by those apps (`register_dashboard`, `register_view`, called from
  their AppConfig.ready); the site only renders and routes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.db.models import QuerySet
from django.db.models.base import ModelBase
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse

from core.access import may_anywhere, principal_may, projects_where

# App labels in the order of the operator's work; anything else goes to System.
SECTIONS = ("campaigns", "segments", "delivery", "core")
SYSTEM_SECTION = "System"
# The system's own machinery: superusers only.
# Login accounts and groups too: a staff user who could edit users could make
# themselves superuser; project admins add existing staff to their project instead.
SUPERUSER_ONLY_APPS = frozenset({"django_celery_beat", "auth"})
# Within a section, the model an operator starts from comes first (by model_name).
MODEL_ORDER = {
    "segments": ("segment", "appuser"),
    "delivery": ("pushtoken", "pushdelivery"),
    "core": ("project", "apikey"),
    "django_celery_beat": ("periodictask",),
}

DashboardBuilder = Callable[[HttpRequest], dict[str, Any]]


class SuperuserOnlyAdmin(admin.ModelAdmin):
    """Mixed into the admin of a system model: invisible to and refused for staff,
    whatever model permissions they were granted."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.is_superuser and super().has_add_permission(request, *args)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)


class ProjectScopedAdmin(admin.ModelAdmin):
    """The admin of a model that belongs to a project (core/access.py): a staff user
    sees the rows of the projects they are a member of, and may add, change or
    delete them where their role there holds the model's permission; superusers
    see and may do all. Put it last among an admin's bases (in place of
    ModelAdmin), so an admin's own narrower rules call it through super().

    `project_field` is the ORM path from the model to its project ("pk" for the
    Project admin itself, "campaign__project" for rows of a campaign).
    """

    project_field = "project"

    def _perm(self, action: str) -> str:
        return f"{self.opts.app_label}.{action}_{self.opts.model_name}"

    def _may(self, request: HttpRequest, action: str, obj: Any = None) -> bool:
        perm = self._perm(action)
        if obj is None:
            return may_anywhere(request.user, perm)
        return principal_may(request.user, perm, obj)

    def _member_projects(self, request: HttpRequest, action: str = "view") -> list[Any] | None:
        return projects_where(request.user, self._perm(action))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self.rows_allowed(request, super().get_queryset(request), "view")

    def rows_allowed(
        self, request: HttpRequest, queryset: QuerySet[Any], action: str
    ) -> QuerySet[Any]:
        """The rows of ``queryset`` in projects where the user may ``action`` them
        (what a bulk action may touch)."""
        ids = self._member_projects(request, action)
        if ids is None:
            return queryset
        return queryset.filter(**{f"{self.project_field}__in": ids})

    def get_list_filter(self, request: HttpRequest) -> Any:
        # The stock project filter lists every project; offer only those in the list.
        return [
            (name, admin.RelatedOnlyFieldListFilter) if name == "project" else name
            for name in super().get_list_filter(request)
        ]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        """A new row's project: only those where the user may add such rows; any
        other project-owned choice (a campaign's segment): only member projects'."""
        related = db_field.related_model
        if related is not None and related._meta.label == "core.Project":
            ids = self._member_projects(request, "add")
            if ids is not None:
                kwargs["queryset"] = related._default_manager.filter(pk__in=ids)
        elif related is not None and any(f.name == "project" for f in related._meta.fields):
            ids = self._member_projects(request)
            if ids is not None:
                kwargs["queryset"] = related._default_manager.filter(project__in=ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._may(request, "view") or self._may(request, "change")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request, "view", obj) or self._may(request, "change", obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._may(request, "add")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request, "change", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request, "delete", obj)


class ProjectScopedInline(admin.options.InlineModelAdmin):
    """An inline of project-owned rows on a page of the same project: the permission
    is checked against the page's object (``obj``, the parent)."""

    def _may(self, request: HttpRequest, action: str, obj: Any = None) -> bool:
        perm = f"{self.opts.app_label}.{action}_{self.opts.model_name}"
        if obj is None:
            return may_anywhere(request.user, perm)
        return principal_may(request.user, perm, obj)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request, "view", obj) or self._may(request, "change", obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request, "add", obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request, "change", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request, "delete", obj)


def _model_rank(app_label: str, model: dict[str, Any]) -> tuple[int, str]:
    order = MODEL_ORDER.get(app_label, ())
    name = model["object_name"].lower()
    return (order.index(name) if name in order else len(order), str(model["name"]))


class HeraldAdminSite(admin.AdminSite):
    site_header = "Herald"
    site_title = "Herald console"
    index_title = "Dashboard"
    site_url = None  # no public site: the console is the whole UI
    index_template = "admin/index.html"  # templates/admin/index.html: the dashboard

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        # Failed logins are limited per client IP like failed API keys. Imported here:
        # this module loads with INSTALLED_APPS, the auth forms need the models.
        from core.login import RateLimitedLoginForm

        self.login_form = RateLimitedLoginForm
        self._dashboard: DashboardBuilder | None = None
        self._views: list[tuple[str, Callable[..., HttpResponse], str]] = []

    # --- plugged in by other apps --------------------------------------------------

    def register_dashboard(self, build: DashboardBuilder) -> None:
        """`build(request)` returns the dashboard's template context (the home page)."""
        self._dashboard = build

    def register_view(self, route: str, view: Callable[..., HttpResponse], name: str) -> None:
        """A console page or JSON endpoint at /ops/<route>, behind the console's login
        (`admin_view`), reversible as `admin:<name>`."""
        self._views = [entry for entry in self._views if entry[2] != name]
        self._views.append((route, view, name))

    def register(
        self,
        model_or_iterable: ModelBase | Iterable[ModelBase],
        admin_class: type[admin.ModelAdmin[Any]] | None = None,
        **options: Any,
    ) -> None:
        models: list[Any] = (
            [model_or_iterable]
            if isinstance(model_or_iterable, ModelBase)
            else list(model_or_iterable)
        )
        for model in models:
            chosen = admin_class or admin.ModelAdmin
            system = model._meta.app_label in SUPERUSER_ONLY_APPS
            if system and not issubclass(chosen, SuperuserOnlyAdmin):
                chosen = type(f"SuperuserOnly{chosen.__name__}", (SuperuserOnlyAdmin, chosen), {})
            super().register(model, chosen, **options)

    # --- pages ---------------------------------------------------------------------

    def get_urls(self) -> list[URLResolver | URLPattern]:
        # Before the site's own patterns: they end with a catch-all.
        own = [path("system/", self.admin_view(self.system_index), name="system_index")]
        plugged = [
            path(route, self.admin_view(view), name=name) for route, view, name in self._views
        ]
        return [*own, *plugged, *super().get_urls()]

    def get_app_list(
        self, request: HttpRequest, app_label: str | None = None
    ) -> list[dict[str, Any]]:
        """The operator's order, with the system's apps folded into one System section.

        With `app_label` (an app's own index page) the one app, models in order."""
        app_dict = self._build_app_dict(request, app_label)
        for label, app in app_dict.items():
            app["models"].sort(key=lambda model, label=label: _model_rank(label, model))
        if app_label is not None:
            return list(app_dict.values())
        apps = [app_dict[label] for label in SECTIONS if label in app_dict]
        system = [app for label, app in sorted(app_dict.items()) if label not in SECTIONS]
        if system:
            apps.append(
                {
                    "name": SYSTEM_SECTION,
                    "app_label": "system",
                    "app_url": reverse("admin:system_index", current_app=self.name),
                    "has_module_perms": True,
                    "models": [model for app in system for model in app["models"]],
                }
            )
        return apps

    def system_index(self, request: HttpRequest) -> HttpResponse:
        """The System section's own page (what an app's index page is for an app)."""
        section = [app for app in self.get_app_list(request) if app["app_label"] == "system"]
        if not section:
            raise Http404("The requested admin page does not exist.")
        context = {
            **self.each_context(request),
            "title": f"{SYSTEM_SECTION} administration",
            "subtitle": None,
            "app_list": section,
            "app_label": "system",
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/app_index.html", context)

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """The dashboard (templates/admin/index.html), built by the registered builder."""
        context = dict(self._dashboard(request)) if self._dashboard is not None else {}
        context.update(extra_context or {})
        return super().index(request, context)


class HeraldAdminConfig(AdminConfig):
    """django.contrib.admin with HeraldAdminSite as the default site (INSTALLED_APPS)."""

    default_site = "core.admin_site.HeraldAdminSite"
