"""Small helpers shared by the audience tests (rows are made directly, not via factories
that would need the campaign app, so each test reads as the data it sets up)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.models import ApiKey, Project
from delivery.models import PushToken
from segments.models import AppUser, Segment
from tests.factories import api_client, create_api_key

APNS_TOKEN = "ab" * 32
FCM_TOKEN = "fJ3kQm9xR2:APA91b" + "x_y-Z" * 26  # 147 characters
# A rule in the grammar's shape with an operator the validator refuses: what an admin
# that wrote around the validator could store (issue 9, item 1).
EQUALS_RULE = {"attr": "country", "op": "equals", "value": "US"}
EQUALS_REASON = (
    "rules.op must be one of eq, neq, gt, gte, lt, lte, in, not_in, contains, not_contains, "
    "exists, not_exists, starts_with, ends_with, between, not_between."
)


def fcm_token(n: int) -> str:
    return f"{FCM_TOKEN[:-8]}{n:08d}"


def apns_token(n: int) -> str:
    return f"{n:064x}"


def make_project(name: str = "project") -> Project:
    return Project.objects.create(name=name)


def client_for(project: Project, scope: str = ApiKey.Scope.ADMIN) -> Any:
    _key, raw = create_api_key(project, scope=scope)
    return api_client(raw)


def make_user(
    project: Project,
    external_id: str,
    attributes: dict[str, Any] | None = None,
    *,
    created_at: datetime | None = None,
) -> AppUser:
    user = AppUser.objects.create(
        project=project, external_id=external_id, attributes=attributes or {}
    )
    if created_at is not None:
        AppUser.objects.filter(pk=user.pk).update(created_at=created_at)
        user.refresh_from_db()
    return user


def make_token(
    project: Project,
    user: AppUser | None,
    token: str,
    *,
    provider: str = "apns",
    platform: str = "ios",
    active: bool = True,
    app_version: str = "",
    created_at: datetime | None = None,
) -> PushToken:
    row = PushToken.objects.create(
        project=project,
        app_user=user,
        token=token,
        provider=provider,
        platform=platform,
        active=active,
        app_version=app_version,
    )
    if created_at is not None:
        PushToken.objects.filter(pk=row.pk).update(created_at=created_at)
        row.refresh_from_db()
    return row


def audience_state() -> dict[str, list[Any]]:
    """Every audience row, to assert that a refused request changed nothing."""
    return {
        "users": list(AppUser.objects.order_by("id").values()),
        "tokens": list(PushToken.objects.order_by("id").values()),
        "segments": list(Segment.objects.order_by("id").values()),
    }


def error(response: Any) -> tuple[int, str, dict[str, Any]]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["details"]
