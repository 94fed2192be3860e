"""Who may do what in which project: console roles and API key scopes, one rule.

A staff user acts in a project through a `ProjectMembership` whose role is one of
four Django groups (viewer, editor, sender, admin); the group's permissions are
what the role allows there. An API key acts in its own project with the
permissions of its scope (admin: everything an admin role has; read-only: what a
viewer has; client: device registration only). Superusers may do everything
everywhere. Every door asks the same question, `principal_may(principal, perm,
project)`: the REST API (core.api.ProjectScopedView), the console's admin classes
(core.admin_site.ProjectScopedAdmin) and the MCP tools.

Permissions are Django's `app_label.codename` strings, plus two of Herald's own:
`campaigns.send_pushcampaign` (send, schedule, cancel, test and explicit pushes)
and `segments.register_device` (the app-facing registration API). The groups are
kept equal to ROLE_PERMISSIONS after every migrate (`sync_role_groups`), so the
code is the one place a role is defined. docs/decisions.md, "Console roles".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.db.models import Model

from core.errors import ApplicationError

# --- permissions -------------------------------------------------------------------

VIEW_PROJECT = "core.view_project"
VIEW_CAMPAIGNS = "campaigns.view_pushcampaign"
ADD_CAMPAIGNS = "campaigns.add_pushcampaign"
CHANGE_CAMPAIGNS = "campaigns.change_pushcampaign"
DELETE_CAMPAIGNS = "campaigns.delete_pushcampaign"
SEND_CAMPAIGNS = "campaigns.send_pushcampaign"
VIEW_SEGMENTS = "segments.view_segment"
ADD_SEGMENTS = "segments.add_segment"
CHANGE_SEGMENTS = "segments.change_segment"
DELETE_SEGMENTS = "segments.delete_segment"
VIEW_APP_USERS = "segments.view_appuser"
CHANGE_APP_USERS = "segments.change_appuser"
REGISTER_DEVICES = "segments.register_device"
CHANGE_PROJECT = "core.change_project"
VIEW_API_KEYS = "core.view_apikey"
ADD_API_KEYS = "core.add_apikey"
CHANGE_API_KEYS = "core.change_apikey"
VIEW_AUDIT = "core.view_auditevent"

VIEWER_PERMISSIONS = (
    VIEW_PROJECT,
    VIEW_CAMPAIGNS,
    "campaigns.view_campaignrun",
    VIEW_SEGMENTS,
    VIEW_APP_USERS,
    "delivery.view_pushtoken",
    "delivery.view_pushdelivery",
)
EDITOR_PERMISSIONS = (
    *VIEWER_PERMISSIONS,
    ADD_CAMPAIGNS,
    CHANGE_CAMPAIGNS,
    DELETE_CAMPAIGNS,
    ADD_SEGMENTS,
    CHANGE_SEGMENTS,
    DELETE_SEGMENTS,
    CHANGE_APP_USERS,
    REGISTER_DEVICES,
)
SENDER_PERMISSIONS = (*EDITOR_PERMISSIONS, SEND_CAMPAIGNS)
ADMIN_PERMISSIONS = (
    *SENDER_PERMISSIONS,
    CHANGE_PROJECT,
    VIEW_API_KEYS,
    ADD_API_KEYS,
    CHANGE_API_KEYS,
    "delivery.change_pushtoken",
    VIEW_AUDIT,
    "core.view_projectmembership",
    "core.add_projectmembership",
    "core.change_projectmembership",
    "core.delete_projectmembership",
)

ROLE_VIEWER = "viewer"
ROLE_EDITOR = "editor"
ROLE_SENDER = "sender"
ROLE_ADMIN = "admin"
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    ROLE_VIEWER: VIEWER_PERMISSIONS,
    ROLE_EDITOR: EDITOR_PERMISSIONS,
    ROLE_SENDER: SENDER_PERMISSIONS,
    ROLE_ADMIN: ADMIN_PERMISSIONS,
}
ROLE_DESCRIPTIONS = {
    ROLE_VIEWER: "reads campaigns, results, segments, users and devices",
    ROLE_EDITOR: "also composes campaigns (drafts) and edits segments",
    ROLE_SENDER: "also sends, schedules, cancels and test-pushes",
    ROLE_ADMIN: "also credentials and settings, API keys, members, devices, the audit trail",
}


def role_group_name(role: str) -> str:
    return f"Herald {role}"


ROLE_GROUP_NAMES = {role_group_name(role): role for role in ROLE_PERMISSIONS}

# What an API key's scope allows (ApiKey.Scope values; core.models is not imported
# here so the models module may import this one).
SCOPE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(ADMIN_PERMISSIONS),
    "read_only": frozenset(VIEWER_PERMISSIONS),
    "client": frozenset({REGISTER_DEVICES}),
}

# What a refusal says the permission was for.
PERMISSION_PURPOSES = {
    SEND_CAMPAIGNS: "send, schedule, cancel or test-push campaigns",
    ADD_CAMPAIGNS: "create campaigns",
    CHANGE_CAMPAIGNS: "change campaigns",
    DELETE_CAMPAIGNS: "delete campaigns",
    ADD_SEGMENTS: "create segments",
    CHANGE_SEGMENTS: "change segments",
    DELETE_SEGMENTS: "delete segments",
    CHANGE_PROJECT: "change the project's settings or credentials",
    REGISTER_DEVICES: "register devices or report events",
    ADD_API_KEYS: "create API keys",
    CHANGE_API_KEYS: "revoke or rotate API keys",
}


class Forbidden(ApplicationError):
    status = 403
    code = "FORBIDDEN"


# --- the rule ----------------------------------------------------------------------

_CACHE_ATTRIBUTE = "_herald_project_permissions"


def project_id_of(obj: Any) -> uuid.UUID | None:
    """The project an object belongs to: a Project, a project id, or a row with a
    ``project_id`` (campaigns, segments, users, tokens, keys) or a ``campaign``."""
    if obj is None:
        return None
    if isinstance(obj, uuid.UUID):
        return obj
    if isinstance(obj, Model) and obj._meta.label == "core.Project":
        return obj.pk
    project_id = getattr(obj, "project_id", None)
    if project_id is not None:
        return project_id
    for parent in ("campaign", "token"):  # runs; deliveries (test pushes have no campaign)
        owner = getattr(obj, parent, None)
        if owner is not None:
            return owner.project_id
    return None


def project_permissions(user: Any) -> dict[uuid.UUID, frozenset[str]]:
    """{project id: permissions} of a user's memberships; one query per user object
    (cached on it, like Django's own permission caches, so once per request)."""
    cached: dict[uuid.UUID, frozenset[str]] | None = getattr(user, _CACHE_ATTRIBUTE, None)
    if cached is not None:
        return cached
    from core.models import ProjectMembership

    found: dict[uuid.UUID, set[str]] = {}
    rows = ProjectMembership.objects.filter(user_id=user.pk).values_list(
        "project_id",
        "role__permissions__content_type__app_label",
        "role__permissions__codename",
    )
    for project_id, app_label, codename in rows:
        perms = found.setdefault(project_id, set())
        if codename is not None:
            perms.add(f"{app_label}.{codename}")
    cached = {project_id: frozenset(perms) for project_id, perms in found.items()}
    setattr(user, _CACHE_ATTRIBUTE, cached)
    return cached


def _is_key(principal: Any) -> bool:
    return hasattr(principal, "scope") and hasattr(principal, "project_id")


def principal_may(principal: Any, perm: str, project: Any) -> bool:
    """May this user or API key principal use ``perm`` in ``project`` (a Project, its
    id, or an object of the project)?"""
    if principal is None or not getattr(principal, "is_authenticated", False):
        return False
    project_id = project_id_of(project)
    if _is_key(principal):
        return project_id == principal.project_id and perm in SCOPE_PERMISSIONS.get(
            principal.scope, frozenset()
        )
    if not principal.is_active:
        return False
    if principal.is_superuser:
        return True  # also rows of no project (the audit trail's logins)
    if project_id is None:
        return False
    return perm in project_permissions(principal).get(project_id, frozenset())


def is_member(principal: Any, project: Any) -> bool:
    """May this principal see the project at all (a key: its own project; a user:
    a membership, or superuser)? Others get 404, as for a key on another project."""
    project_id = project_id_of(project)
    if _is_key(principal):
        return project_id == principal.project_id
    if not principal.is_active:
        return False
    return bool(principal.is_superuser) or project_id in project_permissions(principal)


def projects_where(user: Any, perm: str | None = None) -> list[uuid.UUID] | None:
    """Ids of the projects where a console user holds ``perm`` (any membership when
    None); None means every project (superusers)."""
    if user.is_superuser:
        return None
    if not user.is_active:
        return []
    return sorted(
        project_id
        for project_id, perms in project_permissions(user).items()
        if perm is None or perm in perms
    )


def may_anywhere(user: Any, perm: str) -> bool:
    """Holds ``perm`` in at least one project (what a console list or add page needs)."""
    found = projects_where(user, perm)
    return found is None or bool(found)


def refusal(principal: Any, perm: str) -> str:
    purpose = PERMISSION_PURPOSES.get(perm, f"use {perm}")
    if _is_key(principal):
        if principal.scope == "client":
            return "This API key may only call the device registration API."
        if principal.scope == "read_only":
            return f"This API key is read-only: it may not {purpose}."
        return f"This API key may not {purpose}."
    return f"Your role in this project does not allow you to {purpose}."


def require(principal: Any, perm: str, project: Any) -> None:
    """403 FORBIDDEN, saying what was refused, unless ``principal_may``."""
    if not principal_may(principal, perm, project):
        raise Forbidden(refusal(principal, perm), details={"permission": perm})


class ProjectRoleBackend:
    """Django's permission API over memberships: ``user.has_perm(perm, project)`` (or
    an object of the project) answers what the user's role there allows. Without an
    object it answers nothing (ModelBackend's global permissions grant no project).
    Not a BaseBackend subclass: this module is imported while settings load, before
    django.contrib.auth's models may be; Django asks backends by duck typing."""

    def authenticate(self, request: Any, **credentials: Any) -> None:
        return None  # logs nobody in: ModelBackend does

    def get_user(self, user_id: Any) -> None:
        return None

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if obj is None or not getattr(user_obj, "is_active", False) or user_obj.is_anonymous:
            return False
        return principal_may(user_obj, perm, obj)


# --- the role groups ---------------------------------------------------------------


def sync_role_groups(**signal: Any) -> None:
    """Make the four role groups hold exactly ROLE_PERMISSIONS (post_migrate)."""
    from django.contrib.auth.models import Group, Permission

    wanted = {perm for perms in ROLE_PERMISSIONS.values() for perm in perms}
    available = {
        f"{app_label}.{codename}": pk
        for pk, app_label, codename in Permission.objects.values_list(
            "pk", "content_type__app_label", "codename"
        )
    }
    if not wanted <= set(available):
        return  # an app's permissions do not exist yet (partial migrate)
    for role, perms in ROLE_PERMISSIONS.items():
        group = Group.objects.get_or_create(name=role_group_name(role))[0]
        group.permissions.set([available[perm] for perm in perms])


def role_of_group(name: str) -> str | None:
    return ROLE_GROUP_NAMES.get(name)


def describe_roles() -> Iterable[tuple[str, str]]:
    return ((role, ROLE_DESCRIPTIONS[role]) for role in ROLE_PERMISSIONS)
