"""Project and API-key writes, shared by the admin, the CLI and (later) the API.

Keys are shown exactly once: `api_key_create` returns the full key to its caller
and stores only the SHA-256 of the secret, so nothing that reads the database
(admin, logs, backups) can recover a working key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from core.access import ROLE_PERMISSIONS, role_group_name
from core.credentials import clean_credential_fields, clean_vapid_subject, generate_vapid_key_pair
from core.errors import InvalidInput
from core.models import ApiKey, DeliveryGuarantee, Heartbeat, Project, ProjectMembership

# Everything an operator may set on a project; id and created_at are not theirs.
PROJECT_WRITABLE_FIELDS = frozenset(
    field.name
    for field in Project._meta.concrete_fields
    if field.editable and field.name not in {"id", "created_at"}
)


def _clean_name(name: str, *, what: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise InvalidInput(f"{what} name must not be blank.", details={"field": "name"})
    max_length = 200
    if len(cleaned) > max_length:
        raise InvalidInput(
            f"{what} name must be at most {max_length} characters.", details={"field": "name"}
        )
    return cleaned


def clean_delivery_guarantee(value: Any) -> str:
    """The one check of a project's crash policy (admin, commands, services)."""
    if value not in DeliveryGuarantee.values:
        raise InvalidInput(
            f"delivery_guarantee must be one of {', '.join(DeliveryGuarantee.values)}.",
            details={"field": "delivery_guarantee"},
        )
    return str(value)


@transaction.atomic
def project_create(*, name: str) -> Project:
    """A new project with no credentials; the operator adds them in the admin."""
    return Project.objects.create(name=_clean_name(name, what="Project"))


@transaction.atomic
def project_update(*, project: Project, fields: Mapping[str, Any]) -> Project:
    """Set the given fields (settings and credentials) and save only those.

    Credentials are cleaned by core.credentials (INVALID_CREDENTIALS when a secret
    is malformed), whoever calls: the admin, seed_demo, create_project.

    Naming `update_fields` keeps a concurrent edit of other fields (another
    operator, `seed_demo`) from being overwritten with stale values.
    """
    unknown = set(fields) - PROJECT_WRITABLE_FIELDS
    if unknown:
        raise InvalidInput(
            f"Not a writable project field: {', '.join(sorted(unknown))}.",
            details={"fields": sorted(unknown)},
        )
    if not fields:
        return project
    for name, value in clean_credential_fields(fields).items():
        if name == "name":
            value = _clean_name(value, what="Project")
        elif name == "delivery_guarantee":
            value = clean_delivery_guarantee(value)
        setattr(project, name, value)
    project.save(update_fields=list(fields))
    return project


@transaction.atomic
def project_generate_vapid(*, project: Project, subject: Any) -> tuple[Project, bool]:
    """Give the project a fresh VAPID key pair and subject. Returns (project, rotated).

    Rotating (the project had keys) breaks every existing web push subscription:
    browsers subscribed with the old public key, and push services refuse pushes
    signed with another one, so apps must subscribe again. The subject is checked
    before anything changes; the row is locked so two rotations do not interleave.
    """
    clean_subject = clean_vapid_subject(subject)
    locked = Project.objects.select_for_update().get(pk=project.pk)
    rotated = bool(locked.webpush_vapid_private_key)
    private_pem, public_key = generate_vapid_key_pair()
    project.webpush_vapid_private_key = private_pem
    project.webpush_vapid_public_key = public_key
    project.webpush_vapid_subject = clean_subject
    project.save(
        update_fields=[
            "webpush_vapid_private_key",
            "webpush_vapid_public_key",
            "webpush_vapid_subject",
        ]
    )
    return project, rotated


@transaction.atomic
def api_key_create(
    *, project: Project, name: str, scope: str = ApiKey.Scope.ADMIN
) -> tuple[ApiKey, str]:
    """Create a key and return it with the full secret, which is never stored.

    The caller must hand the full key to the operator now: afterwards only its
    prefix (to find the row) and hash (to check it) exist.
    """
    if scope not in ApiKey.Scope.values:
        raise InvalidInput(
            f"scope must be one of {', '.join(ApiKey.Scope.values)}.", details={"field": "scope"}
        )
    full_key, prefix, secret_hash = ApiKey.generate()
    key = ApiKey.objects.create(
        project=project,
        name=_clean_name(name, what="API key"),
        scope=scope,
        prefix=prefix,
        secret_hash=secret_hash,
    )
    return key, full_key


@transaction.atomic
def api_key_replace(*, project: Project, name: str, scope: str) -> tuple[ApiKey, str]:
    """Revoke the project's live keys called ``name`` and create a new one.

    For a key a program holds rather than a person (the demo's device behaviour gets
    one at every `run_stack` start, by environment variable): at most one stays valid,
    and a key that leaked with an old process stops working at the next start.
    """
    for old in ApiKey.objects.filter(project=project, name=name, revoked_at__isnull=True):
        api_key_revoke(key=old)
    return api_key_create(project=project, name=name, scope=scope)


@transaction.atomic
def api_key_revoke(*, key: ApiKey) -> None:
    """Revoke a key; revoking twice keeps the first revocation time.

    Rows are kept (not deleted) so the admin still shows who had access and when.
    """
    now = timezone.now()
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now)
    key.refresh_from_db(fields=["revoked_at"])


def _role_group(role: str) -> Group:
    group = Group.objects.filter(name=role_group_name(role)).first()
    if role not in ROLE_PERMISSIONS or group is None:
        raise InvalidInput(
            f"role must be one of {', '.join(ROLE_PERMISSIONS)}.", details={"field": "role"}
        )
    return group


@transaction.atomic
def project_member_set(*, project: Project, user: Any, role: str) -> ProjectMembership:
    """Give a staff account ``role`` in ``project`` (core/access.py), replacing the role it
    had there. Only active staff accounts can be members: the console is staff-only."""
    if not (user.is_staff and user.is_active):
        raise InvalidInput(
            "Only active staff accounts can be members of a project.", details={"field": "user"}
        )
    membership, _ = ProjectMembership.objects.update_or_create(
        project=project, user=user, defaults={"role": _role_group(role)}
    )
    return membership


@transaction.atomic
def project_member_remove(*, membership: ProjectMembership) -> None:
    """Take a user's role in a project away (they no longer see it)."""
    ProjectMembership.objects.filter(pk=membership.pk).delete()


def heartbeat(name: str, *, now: datetime | None = None) -> None:
    """Record that ``name`` just did its work (one row per name, upserted)."""
    Heartbeat.objects.update_or_create(name=name, defaults={"at": now or timezone.now()})
