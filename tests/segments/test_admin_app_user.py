"""An app user's page: their devices, newest deliveries and a test push that goes
through the API's validator and sender (campaigns.testpush), answering its envelope."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from core.models import Project
from delivery.models import PushDelivery
from tests.campaigns.conftest import sim, wire  # noqa: F401  (the simulators fixture)
from tests.console import url
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    ProjectFactory,
    PushDeliveryFactory,
    PushTokenFactory,
    add_member,
)


def push_url(user: Any) -> str:
    return reverse("admin:app_user_test_push", args=[user.pk])


def post(client: Client, user: Any, body: Any) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(push_url(user), data, content_type="application/json")


def test_user_page_lists_devices_and_newest_deliveries(staff: Client) -> None:
    user = AppUserFactory.create(external_id="ada")
    active = PushTokenFactory.create(project=user.project, app_user=user, token="a" * 64)
    PushTokenFactory.create(
        project=user.project, app_user=user, token="b" * 64, active=False, invalid_reason="gone"
    )
    campaign = CampaignFactory.create(project=user.project, name="Winter sale")
    deliveries = [
        PushDeliveryFactory.create(campaign=campaign, run=n, token=active) for n in range(1, 23)
    ]

    response = staff.get(url("segments_appuser_change", user.pk))

    assert response.status_code == 200
    assert [t.token[0] for t in response.context["user_tokens"]] == ["a", "b"]
    shown = response.context["user_deliveries"]
    assert [d.pk for d in shown] == [d.pk for d in reversed(deliveries)][:20]
    page = response.content.decode()
    assert 'id="user-tokens"' in page and 'id="user-deliveries"' in page
    assert f'data-url="{push_url(user)}"' in page
    assert '<label for="test-push-title">Title</label>' in page
    assert "gone" in page and "Winter sale" in page


def test_user_page_times_carry_their_zone(staff: Client) -> None:
    user = AppUserFactory.create()
    page = staff.get(url("segments_appuser_change", user.pk)).content.decode()
    created = user.created_at.strftime("%Y-%m-%d %H:%M")
    assert f'<div class="readonly">{created} UTC</div>' in page


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"body": "B"}, 400, "MISSING_TITLE"),
        ({"title": "T"}, 400, "MISSING_BODY"),
        ("not json", 400, "INVALID_BODY"),
        ("[1]", 400, "INVALID_BODY"),
        ({"title": "T", "body": "B", "device_token": "x"}, 400, "VALIDATION_ERROR"),
        ({"title": "T", "body": "B"}, 404, "NO_ACTIVE_TOKEN"),
    ],
)
def test_test_push_refusals_are_the_apis_and_write_nothing(
    staff: Client, body: Any, status: int, code: str
) -> None:
    user = AppUserFactory.create()
    PushTokenFactory.create(project=user.project, app_user=user, active=False)

    response = post(staff, user, body)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert PushDelivery.objects.count() == 0


def test_test_push_endpoint_refuses_get_unknown_users_and_staff_without_permission(
    staff: Client,
) -> None:
    user = AppUserFactory.create()
    assert staff.get(push_url(user)).status_code == 405
    missing = reverse("admin:app_user_test_push", args=[uuid.uuid4()])
    response = staff.post(missing, "{}", content_type="application/json")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "NOT_FOUND")

    # A viewer of the user's project may not push; a member of no project sees no user.
    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    outsider = get_user_model().objects.create_user("outsider", is_staff=True)
    add_member(viewer, user.project, "viewer")
    client = Client()
    client.force_login(viewer)
    response = post(client, user, {"title": "T", "body": "B"})
    assert (response.status_code, response.json()["error"]["code"]) == (403, "FORBIDDEN")
    client.force_login(outsider)
    response = post(client, user, {"title": "T", "body": "B"})
    assert (response.status_code, response.json()["error"]["code"]) == (404, "NOT_FOUND")
    anonymous = Client().post(push_url(user), "{}", content_type="application/json")
    assert anonymous.status_code == 302  # to the console's login


def test_test_push_reaches_the_users_device(staff: Client, sim: Any) -> None:  # noqa: F811
    project: Project = wire(ProjectFactory.create(), sim)
    user = AppUserFactory.create(project=project)
    token = PushTokenFactory.create(project=project, app_user=user, token="ab" * 32)

    response = post(staff, user, {"title": "Hello", "body": "From the console"})

    assert response.status_code == 200, response.json()
    answer = response.json()
    delivery = PushDelivery.objects.get()
    assert answer == {
        "delivery_id": delivery.pk,
        "provider": "apns",
        "provider_message_id": delivery.provider_msg_id,
        "status": "sent",
    }
    assert (delivery.token_id, delivery.campaign_id) == (token.pk, None)
