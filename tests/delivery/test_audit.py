"""The console's token actions are an operator's override: audited per project, with
a count and token ids (never the token strings)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from core.models import AuditEvent
from delivery.models import PushToken
from tests.console import url
from tests.factories import ProjectFactory, PushTokenFactory

pytestmark = pytest.mark.django_db


def act(staff: Client, action: str, tokens: list[PushToken]) -> None:
    staff.post(
        url("delivery_pushtoken_changelist"),
        {"action": action, "_selected_action": [t.pk for t in tokens]},
    )


def trail() -> list[tuple[Any, ...]]:
    rows = AuditEvent.objects.exclude(action__startswith="console.").order_by("id")
    return list(
        rows.values_list(
            "action", "project_id", "actor", "via", "object_id", "object_repr", "changes"
        )
    )


def test_deactivate_and_reactivate_are_recorded_per_project(staff: Client) -> None:
    first, second = ProjectFactory.create(), ProjectFactory.create()
    a1 = PushTokenFactory.create(project=first)
    a2 = PushTokenFactory.create(project=first)
    b1 = PushTokenFactory.create(project=second)
    idle = PushTokenFactory.create(project=second, active=False)

    act(staff, "deactivate_tokens", [a1, a2, b1, idle])  # idle: already inactive
    act(staff, "reactivate_tokens", [b1])

    assert list(PushToken.objects.filter(active=True).values_list("pk", flat=True)) == [b1.pk]
    assert PushToken.objects.get(pk=a1.pk).invalid_reason == "deactivated by ops in the admin"
    deactivated = sorted(  # one event per project, in project id order
        [
            ("push_token.deactivated", first.pk, "ops", "console", "", "2 tokens",
             {"count": 2, "token_ids": [a1.pk, a2.pk]}),
            ("push_token.deactivated", second.pk, "ops", "console", str(b1.pk), "1 token",
             {"count": 1, "token_ids": [b1.pk]}),
        ],
        key=lambda row: str(row[1]),
    )  # fmt: skip
    assert trail() == [
        *deactivated,
        ("push_token.reactivated", second.pk, "ops", "console", str(b1.pk), "1 token",
         {"count": 1, "token_ids": [b1.pk]}),
    ]  # fmt: skip
    stored = str(list(AuditEvent.objects.values()))
    assert all(t.token not in stored for t in (a1, a2, b1))


def test_nothing_to_change_records_nothing(staff: Client) -> None:
    idle = PushTokenFactory.create(active=False)

    act(staff, "deactivate_tokens", [idle])

    assert trail() == []
