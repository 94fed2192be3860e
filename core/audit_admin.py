"""The audit trail in the console: read-only, under "Projects & keys".

Nobody adds, changes or deletes an event here, superusers included (the trail is
append-only; only the retention purge deletes). Viewing follows Django's model
permissions of the user's role in each project (core/access.py: the admin role);
events of no project (logins) are the superuser's. Events name their project by id
(not a foreign key: the trail outlives projects), so the project's name is looked up
by a subquery and the project filter lists the projects the user may read.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.access import VIEW_AUDIT, projects_where
from core.admin import EstimatedCountPaginator
from core.admin_site import ProjectScopedAdmin
from core.models import AuditEvent, Project
from core.timefmt import zoned


class AuditProjectFilter(admin.SimpleListFilter):
    title = "project"
    parameter_name = "project_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = projects_where(request.user, VIEW_AUDIT)
        projects = Project.objects.all() if ids is None else Project.objects.filter(pk__in=ids)
        return [(str(pk), name) for pk, name in projects.values_list("pk", "name")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent]
    ) -> QuerySet[AuditEvent]:
        value = self.value()
        return queryset.filter(project_id=value) if value else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ProjectScopedAdmin):
    project_field = "project_id"

    list_display = (
        "when",
        "action",
        "actor",
        "actor_kind",
        "via",
        "project",
        "object_repr",
        "ip",
    )
    list_filter = (AuditProjectFilter, "action", "actor_kind", "via")
    search_fields = ("actor", "object_repr", "=object_id")
    search_help_text = "An actor (username, hk_<prefix>_…, command), an object's name or id."
    date_hierarchy = "at"
    ordering = ("-at", "-id")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = (
        "when",
        "action",
        "project",
        "actor",
        "actor_kind",
        "actor_user_id",
        "via",
        "ip",
        "user_agent",
        "object_type",
        "object_id",
        "object_repr",
        "changes_json",
    )
    readonly_fields = fields

    when = zoned("at", "At")

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        names = Project.objects.filter(pk=OuterRef("project_id")).values("name")[:1]
        return super().get_queryset(request).annotate(project_name=Subquery(names))

    @admin.display(description="Project", ordering="project_name")
    def project(self, obj: AuditEvent) -> str:
        if obj.project_id is None:
            return "—"
        name = getattr(obj, "project_name", None)
        return name or f"{obj.project_id} (deleted)"

    @admin.display(description="Changes")
    def changes_json(self, obj: AuditEvent) -> SafeString:
        text = json.dumps(obj.changes, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html("<pre>{}</pre>", text)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
