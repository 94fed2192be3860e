"""Issue 13's done-when for seed-compatible requests, end to end: an Ocamba-shaped
targeting campaign and a MoEngage-style signed request each create and send a
campaign that a real worker takes to exactly the expected tokens at the simulators."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from campaigns.compat.moengage import signature_for
from campaigns.models import CampaignStatus, PushCampaign
from delivery.models import PushToken
from segments.models import AppUser
from tests.e2e.conftest import Simulators, drain_broker, wait_for
from tests.e2e.test_delivery import _accepted, _project, _tokens
from tests.factories import api_client, create_api_key

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _set(tokens: list[str], **attributes: Any) -> None:
    for user_id in PushToken.objects.filter(token__in=tokens).values_list("app_user_id", flat=True):
        AppUser.objects.filter(pk=user_id).update(attributes=attributes)


def _sent(campaign_id: str) -> bool:
    return PushCampaign.objects.get(pk=campaign_id).status == CampaignStatus.SENT


def test_ocamba_targeting_reaches_exactly_the_targeted_tokens(
    simulators: Simulators, start_worker: Callable[..., Any]
) -> None:
    simulators.reset()
    drain_broker()
    project = _project(simulators)
    ca_pro = _tokens(project, "apns", 6, prefix="a") + _tokens(project, "fcm", 6, prefix="a")
    ca_free = _tokens(project, "fcm", 5, prefix="b")
    us_pro = _tokens(project, "apns", 5, prefix="c")
    _set(ca_pro, country="CA", plan="pro")
    _set(ca_free, country="CA", plan="free")
    _set(us_pro, country="US", plan="pro")
    excluded = PushToken.objects.get(token=ca_pro[0]).app_user
    assert excluded is not None
    _, key = create_api_key(project)
    client = api_client(key)
    start_worker()
    created = client.post(
        "/admin/push",
        {
            "title": "Hello",
            "body": "From Ocamba's shape",
            "targeting": {
                "countries": {"items": ["CA"], "op": "include"},
                "user_data": {"plan": {"items": ["pro"], "op": "include"}},
                "users": {"items": [excluded.external_id], "op": "exclude"},
            },
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["targeting"] == {
        "countries": {"include": ["CA"]},
        "user_data": {"include": {"plan": ["pro"]}},
        "users": {"exclude": [excluded.external_id]},
    }
    campaign_id = created.json()["id"]
    assert client.post(f"/admin/push/{campaign_id}/send").status_code == 200
    assert wait_for(lambda: _sent(campaign_id), timeout=120)
    accepted = _accepted(simulators)["tokens"]
    assert dict(accepted) == dict.fromkeys(ca_pro[1:], 1)


def test_moengage_signed_request_reaches_exactly_the_expected_tokens(
    simulators: Simulators, start_worker: Callable[..., Any]
) -> None:
    simulators.reset()
    drain_broker()
    project = _project(simulators)
    ios = _tokens(project, "apns", 8)
    android = _tokens(project, "fcm", 8)
    _, key = create_api_key(project)
    app_id = str(project.pk)
    client = api_client()
    basic = base64.b64encode(f"{app_id}:{key}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {basic}")
    start_worker()

    def request(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "appId": app_id,
            "campaignName": name,
            "signature": signature_for(app_id, name, key),
            "targetPlatform": ["IOS"],
            "campaignDelivery": {"type": "soon"},
            "payload": {"IOS": {"title": "Sale", "message": "50% off"}},
            **extra,
        }

    # All Users on iOS only: every iOS token once, no Android token.
    sent = client.post(
        "/admin/compat/moengage/push", request("Spring sale", targetAudience="All Users")
    )
    assert sent.status_code == 200, sent.content
    campaign_id = sent.json()["campaign_id"]
    assert wait_for(lambda: _sent(campaign_id), timeout=120)
    assert dict(_accepted(simulators)["tokens"]) == dict.fromkeys(ios, 1)

    # A User audience: the two users' tokens, once more each.
    users = [
        PushToken.objects.get(token=token).app_user.external_id  # type: ignore[union-attr]
        for token in (ios[0], android[0])
    ]
    pushed = client.post(
        "/admin/compat/moengage/push",
        request(
            "Order updates",
            targetAudience="User",
            targetPlatform=["IOS", "ANDROID"],
            payload={
                "IOS": {"title": "Order", "message": "Shipped"},
                "ANDROID": {"title": "Order", "message": "Shipped"},
            },
            targetUserAttributes={
                "attribute": "USER_ATTRIBUTE_UNIQUE_ID",
                "attributeValue": users,
            },
        ),
    )
    assert pushed.status_code == 200, pushed.content
    assert pushed.json()["targeted"] == 2
    expected = {**dict.fromkeys(ios, 1), ios[0]: 2, android[0]: 1}
    assert wait_for(lambda: dict(_accepted(simulators)["tokens"]) == expected, timeout=120)
