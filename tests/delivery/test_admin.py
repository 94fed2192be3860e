"""The console's delivery pages: the delivery log is read-only, token actions."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.utils import timezone

from delivery.models import PushToken
from tests.console import messages_of, url
from tests.factories import (
    PushTokenFactory,
)


def test_delivery_log_is_read_only(staff: Client, some_of_everything: dict[str, Any]) -> None:
    delivery = some_of_everything["delivery_pushdelivery"]
    assert staff.get(url("delivery_pushdelivery_add")).status_code == 403
    assert staff.post(url("delivery_pushdelivery_delete", delivery.pk)).status_code == 403
    page = staff.get(url("delivery_pushdelivery_change", delivery.pk)).content.decode()
    assert 'name="_save"' not in page


def test_token_deactivate_and_reactivate_actions(staff: Client) -> None:
    active = PushTokenFactory.create()
    dead = PushTokenFactory.create(
        active=False, invalidated_at=timezone.now(), invalid_reason="Unregistered"
    )

    response = staff.post(
        url("delivery_pushtoken_changelist"),
        {"action": "deactivate_tokens", "_selected_action": [active.pk, dead.pk]},
        follow=True,
    )

    assert messages_of(response) == [("success", "Deactivated 1 token(s).")]
    active.refresh_from_db()
    dead.refresh_from_db()
    assert (active.active, active.invalid_reason) == (False, "deactivated by ops in the admin")
    assert active.invalidated_at is not None
    assert dead.invalid_reason == "Unregistered"

    response = staff.post(
        url("delivery_pushtoken_changelist"),
        {"action": "reactivate_tokens", "_selected_action": [active.pk, dead.pk]},
        follow=True,
    )

    assert messages_of(response) == [("success", "Reactivated 2 token(s).")]
    assert list(PushToken.objects.values_list("active", "invalidated_at", "invalid_reason")) == [
        (True, None, ""),
        (True, None, ""),
    ]


# --- campaign actions go through the services ----------------------------------------
