"""Project and API-key writes, shared by the admin, the CLI and (later) the API.

Keys are shown exactly once: `api_key_create` returns the full key to its caller
and stores only the SHA-256 of the secret, so nothing that reads the database
(admin, logs, backups) can recover a working key. A key may expire; `api_key_rotate`
replaces one without downtime (the old key keeps working for a grace period).
Whether a key is live is `ApiKey.state_at`'s call (core/models.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from core.access import ROLE_PERMISSIONS, role_group_name, role_of_group
from core.audit import audit_record, with_fields
from core.credentials import clean_credential_fields, clean_vapid_subject, generate_vapid_key_pair
from core.errors import Conflict, InvalidInput
from core.models import (
    ApiKey,
    DeliveryGuarantee,
    Heartbeat,
    KeyState,
    Project,
    ProjectMembership,
)

# How long a rotated key keeps working unless the caller says otherwise.
DEFAULT_ROTATION_GRACE = timedelta(hours=24)

# Everything an operator may set on a project; id and created_at are not theirs.
PROJECT_WRITABLE_FIELDS = frozenset(
    field.name
    for field in Project._meta.concrete_fields
    if field.editable and field.name not in {"id", "created_at"}
)
# Provider credentials and connection settings: a change is audited as
# project.credentials_changed, by field name only (never a value).
CREDENTIAL_FIELDS = frozenset(
    name for name in PROJECT_WRITABLE_FIELDS if name.startswith(("apns_", "fcm_", "webpush_"))
)
# The secrets among them: stored sealed, so "changed" means set or cleared.
SECRET_FIELDS = frozenset(
    {"apns_auth_key", "apns_certificate", "fcm_service_account", "webpush_vapid_private_key"}
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
    project = Project.objects.create(name=_clean_name(name, what="Project"))
    audit_record(action="project.created", project_id=project.pk, obj=project)
    return project


def _changed(stored: Mapping[str, Any], name: str, value: Any) -> bool:
    """Whether setting `value` changes the stored field (a secret: whether one is set
    or cleared; its stored form is sealed, so values are not compared)."""
    if name in SECRET_FIELDS:
        return bool(value) or bool(stored.get(name))
    return bool(stored.get(name) != value)


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
    # The row as stored (a door such as the admin form may have set the instance's
    # attributes already): what the audit trail compares against.
    stored = Project.objects.filter(pk=project.pk).values(*fields).first() or {}
    changed = []
    for name, value in clean_credential_fields(fields).items():
        if name == "name":
            value = _clean_name(value, what="Project")
        elif name == "delivery_guarantee":
            value = clean_delivery_guarantee(value)
        if _changed(stored, name, value):
            changed.append(name)
        setattr(project, name, value)
    project.save(update_fields=list(fields))
    settings = [name for name in changed if name not in CREDENTIAL_FIELDS]
    credentials = [name for name in changed if name in CREDENTIAL_FIELDS]
    if settings:
        audit_record(
            action="project.updated",
            project_id=project.pk,
            obj=project,
            changes=with_fields(settings),
        )
    if credentials:
        audit_record(
            action="project.credentials_changed",
            project_id=project.pk,
            obj=project,
            changes=with_fields(credentials),
        )
    return project


@transaction.atomic
def project_delete(*, project: Project) -> None:
    """Delete a project with everything of it (the console, superusers). Its audit
    events stay: they name the project by id, not by a foreign key."""
    audit_record(action="project.deleted", project_id=project.pk, obj=project)
    project.delete()


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
    audit_record(
        action="project.vapid_generated",
        project_id=project.pk,
        obj=project,
        changes={"rotated": rotated},
    )
    return project, rotated


def clean_key_expiry(expires_at: Any, *, now: datetime) -> datetime | None:
    """The one check of a key's expiry: None (never) or an aware time after ``now``."""
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime) or timezone.is_naive(expires_at):
        raise InvalidInput(
            "expires_at must be a date-time with a time zone, or null (never expires).",
            details={"field": "expires_at"},
        )
    if expires_at <= now:
        raise InvalidInput("expires_at must be in the future.", details={"field": "expires_at"})
    return expires_at


@transaction.atomic
def api_key_create(
    *,
    project: Project,
    name: str,
    scope: str = ApiKey.Scope.ADMIN,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with the full secret, which is never stored.

    The caller must hand the full key to the operator now: afterwards only its
    prefix (to find the row) and hash (to check it) exist. ``expires_at`` None: the
    key works until revoked; otherwise it must be in the future.
    """
    if scope not in ApiKey.Scope.values:
        raise InvalidInput(
            f"scope must be one of {', '.join(ApiKey.Scope.values)}.", details={"field": "scope"}
        )
    clean_name = _clean_name(name, what="API key")
    clean_expiry = clean_key_expiry(expires_at, now=timezone.now())
    full_key, prefix, secret_hash = ApiKey.generate()
    key = ApiKey.objects.create(
        project=project,
        name=clean_name,
        scope=scope,
        prefix=prefix,
        secret_hash=secret_hash,
        expires_at=clean_expiry,
    )
    audit_record(
        action="api_key.created", project_id=project.pk, obj=key, changes={"scope": key.scope}
    )
    return key, full_key


@transaction.atomic
def api_key_rotate(*, key: ApiKey, grace: timedelta = DEFAULT_ROTATION_GRACE) -> tuple[ApiKey, str]:
    """Replace a live key: a new key with the same project, name and scope, and the
    old one expiring ``grace`` from now (0: revoked at once), so clients can switch
    without downtime. Returns (new key, full secret); ``key`` is updated in place.

    The new key gets the old one's lifetime (expiry minus creation) from now, or no
    expiry if the old had none. Rotation never lengthens the old key's life: one due
    to expire within the grace keeps its own expiry. Refused with 409
    API_KEY_NOT_LIVE for a revoked or expired key (nothing to keep working) and
    API_KEY_ALREADY_ROTATED for one already replaced (rotate its successor), so two
    operators rotating at once do not both mint a key. The row is locked meanwhile.
    """
    if grace < timedelta(0):
        raise InvalidInput("grace must not be negative.", details={"field": "grace"})
    locked = ApiKey.objects.select_for_update().get(pk=key.pk)
    now = timezone.now()
    state = locked.state_at(now)
    if state in (KeyState.REVOKED, KeyState.EXPIRED):
        raise Conflict(
            f"This API key is {state.label.lower()}; only a live key can be rotated.",
            code="API_KEY_NOT_LIVE",
            details={"state": state.value},
        )
    if locked.replaced_by_id is not None:
        raise Conflict(
            "This API key was already rotated; rotate the key that replaced it.",
            code="API_KEY_ALREADY_ROTATED",
            details={"replaced_by": f"{locked.replaced_by}"},
        )
    lifetime = None if locked.expires_at is None else locked.expires_at - locked.created_at
    new_key, full_key = api_key_create(
        project=locked.project,
        name=locked.name,
        scope=locked.scope,
        expires_at=None if lifetime is None else now + lifetime,
    )
    locked.replaced_by = new_key
    if grace == timedelta(0):
        locked.save(update_fields=["replaced_by"])
        api_key_revoke(key=locked)
    else:
        until = now + grace
        if locked.expires_at is None or until < locked.expires_at:
            locked.expires_at = until
        locked.save(update_fields=["replaced_by", "expires_at"])
    audit_record(
        action="api_key.rotated",
        project_id=locked.project_id,
        obj=locked,
        changes={
            "replaced_by": str(new_key),
            "old_key_until": None if locked.expires_at is None else locked.expires_at.isoformat(),
            "grace_seconds": int(grace.total_seconds()),
        },
    )
    key.refresh_from_db(fields=["replaced_by", "expires_at", "revoked_at"])
    return new_key, full_key


@transaction.atomic
def api_key_replace(*, project: Project, name: str, scope: str) -> tuple[ApiKey, str]:
    """Revoke the project's live keys called ``name`` and create a new one.

    For a key a program holds rather than a person (the demo's device behaviour gets
    one at every `run_stack` start, by environment variable): at most one stays valid,
    and a key that leaked with an old process stops working at the next start.
    """
    for old in ApiKey.objects.live().filter(project=project, name=name):
        api_key_revoke(key=old)
    return api_key_create(project=project, name=name, scope=scope)


@transaction.atomic
def api_key_revoke(*, key: ApiKey) -> None:
    """Revoke a key; revoking twice keeps the first revocation time.

    Rows are kept (not deleted) so the admin still shows who had access and when.
    """
    now = timezone.now()
    revoked = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now)
    key.refresh_from_db(fields=["revoked_at"])
    if revoked:
        audit_record(action="api_key.revoked", project_id=key.project_id, obj=key)


@transaction.atomic
def api_key_delete(*, key: ApiKey) -> None:
    """Delete a key's row (the console). Revoking keeps the row and is the usual way;
    either way the audit trail keeps the key's events."""
    audit_record(action="api_key.deleted", project_id=key.project_id, obj=key)
    key.delete()


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
    group = _role_group(role)
    previous = (
        ProjectMembership.objects.select_for_update()
        .filter(project=project, user=user)
        .select_related("role")
        .first()
    )
    if previous is not None and previous.role_id == group.pk:
        return previous  # nothing changes: nothing to record
    membership, created = ProjectMembership.objects.update_or_create(
        project=project, user=user, defaults={"role": group}
    )
    changes: dict[str, Any] = {"user": user.get_username(), "role": role}
    if previous is not None:
        changes["previous_role"] = role_of_group(previous.role.name)
    audit_record(
        action="member.added" if created else "member.role_changed",
        project_id=project.pk,
        obj=membership,
        changes=changes,
    )
    return membership


@transaction.atomic
def project_member_remove(*, membership: ProjectMembership) -> None:
    """Take a user's role in a project away (they no longer see it)."""
    current = (
        ProjectMembership.objects.select_for_update()
        .select_related("user", "role")
        .filter(pk=membership.pk)
        .first()
    )
    if current is None:
        return  # already removed
    ProjectMembership.objects.filter(pk=current.pk).delete()
    audit_record(
        action="member.removed",
        project_id=current.project_id,
        obj=current,
        changes={"user": current.user.get_username(), "role": role_of_group(current.role.name)},
    )


def heartbeat(name: str, *, now: datetime | None = None) -> None:
    """Record that ``name`` just did its work (one row per name, upserted)."""
    Heartbeat.objects.update_or_create(name=name, defaults={"at": now or timezone.now()})
