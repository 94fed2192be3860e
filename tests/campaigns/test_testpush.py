"""Test pushes over real HTTP/2 + TLS to the in-process provider simulators."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from core.services import project_generate_vapid
from delivery.models import PushDelivery, PushToken
from tests.campaigns.conftest import DEAD_APNS
from tests.factories import AppUserFactory, PushTokenFactory

APNS_TOKEN = "ab" * 32
FCM_TOKEN = "f" + "x" * 150


def url(project, alias: bool) -> str:
    return "/admin/push/test" if alias else f"/admin/projects/{project.id}/push/campaigns/test"


@pytest.mark.parametrize("alias", [False, True])
def test_by_app_user_uses_newest_active_token(api, project, sim, alias):
    user = AppUserFactory(project=project)
    PushTokenFactory(project=project, app_user=user, token="00" * 32, provider="apns", active=False)
    newest = PushTokenFactory(
        project=project, app_user=user, token=FCM_TOKEN, provider="fcm", platform="android"
    )
    before = sim.stats(tokens=True)["fcm"]["tokens"].get(FCM_TOKEN, 0)

    response = api.client.post(
        url(project, alias), {"title": "T", "body": "B", "app_user_id": str(user.id)}
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    delivery = PushDelivery.objects.get(pk=body["delivery_id"])
    assert body == {
        "delivery_id": delivery.pk,
        "provider": "fcm",
        "provider_message_id": delivery.provider_msg_id,
        "status": "sent",
    }
    assert body["provider_message_id"].startswith("projects/herald-demo/messages/")
    assert delivery.campaign_id is None and delivery.token_id == newest.pk
    assert sim.stats(tokens=True)["fcm"]["tokens"][FCM_TOKEN] == before + 1


def test_by_device_token(api, project):
    response = api.client.post(
        url(project, False),
        {"title": "T", "body": "B", "device_token": APNS_TOKEN, "provider": "apns"},
    )
    assert response.status_code == 200
    assert response.json()["provider"] == "apns" and response.json()["status"] == "sent"
    assert PushToken.objects.get(token=APNS_TOKEN).platform == "ios"


def test_upper_case_apns_token_is_the_registered_device_not_a_second_row(api, project):
    registered = api.client.post(
        f"/v1/projects/{project.id}/tokens",
        {"token": APNS_TOKEN, "provider": "apns", "platform": "ios", "external_id": "u-1"},
    )
    assert registered.status_code == 201, registered.json()
    token = PushToken.objects.get()

    response = api.client.post(
        url(project, False),
        {"title": "T", "body": "B", "device_token": APNS_TOKEN.upper(), "provider": "apns"},
    )

    assert response.status_code == 200, response.json()
    assert list(PushToken.objects.values_list("pk", "token", "app_user__external_id")) == [
        (token.pk, APNS_TOKEN, "u-1")
    ]
    delivery = PushDelivery.objects.get(pk=response.json()["delivery_id"])
    assert delivery.token_id == token.pk


def test_a_new_device_is_stored_as_registration_stores_it(api, project):
    response = api.client.post(
        url(project, False),
        {"title": "T", "body": "B", "device_token": APNS_TOKEN.upper(), "provider": "APNS"},
    )

    assert response.status_code == 200, response.json()
    assert list(PushToken.objects.values_list("token", "provider", "platform", "active")) == [
        (APNS_TOKEN, "apns", "ios", True)
    ]


def test_provider_rejection_is_push_failed_and_retires_the_token(api, project):
    PushTokenFactory(project=project, token=DEAD_APNS, provider="apns")
    response = api.client.post(
        url(project, False),
        {"title": "T", "body": "B", "device_token": DEAD_APNS, "provider": "apns"},
    )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "PUSH_FAILED"
    delivery = PushDelivery.objects.get(pk=error["details"]["delivery_id"])
    assert error["details"] == {
        "delivery_id": delivery.pk,
        "provider": "apns",
        "provider_message_id": error["details"]["provider_message_id"],
        "status": "invalid_token",
        "invalid_token": True,
    }
    assert delivery.status == "invalid_token" and delivery.error_message == "Unregistered"
    token = PushToken.objects.get(token=DEAD_APNS)
    assert not token.active and token.invalid_reason == "Unregistered"


def test_missing_credentials_is_push_failed(api):
    response = api.client.post(
        url(api.project, False),
        {"title": "T", "body": "B", "device_token": APNS_TOKEN, "provider": "apns"},
    )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "PUSH_FAILED"
    assert error["details"]["invalid_token"] is False
    assert "APNs credentials are not configured" in error["message"]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"title": "T", "body": "B"}, 400, "MISSING_TARGET"),
        ({"title": "T", "body": "B", "device_token": "abc"}, 400, "MISSING_PROVIDER"),
        ({"body": "B", "device_token": "abc", "provider": "apns"}, 400, "MISSING_TITLE"),
        ({"title": "T", "device_token": "abc", "provider": "apns"}, 400, "MISSING_BODY"),
        ({"title": "T", "body": "B", "device_token": "  ", "provider": "apns"}, 400, "NO_TOKEN"),
        ({"title": "T", "body": "B", "app_user_id": str(uuid.UUID(int=1))}, 404, "NO_ACTIVE_TOKEN"),
        ({"title": "T", "body": "B", "app_user_id": "nope"}, 400, "VALIDATION_ERROR"),
        (
            {"title": "T", "body": "B", "device_token": "a", "provider": "x"},
            400,
            "INVALID_PROVIDER",
        ),
        (
            {"title": "T", "body": "B", "device_token": "abc", "provider": "apns"},
            400,
            "INVALID_TOKEN_FORMAT",
        ),
        (
            {"title": "T", "body": "B", "device_token": "x" * 600, "provider": "fcm"},
            400,
            "INVALID_TOKEN_FORMAT",
        ),
        (
            {"title": "T", "body": "B", "device_token": APNS_TOKEN, "provider": "apns"}
            | {"platform": "android"},
            400,
            "INVALID_PLATFORM",
        ),
        (
            {"title": "T", "body": "B", "app_user_id": str(uuid.UUID(int=1)), "x": 1},
            400,
            "VALIDATION_ERROR",
        ),
    ],
)
def test_error_shapes_write_nothing(api, project, payload, status, code):
    response = api.client.post(url(project, False), payload)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert PushDelivery.objects.count() == 0
    assert PushToken.objects.count() == 0


def test_unexpected_failure_is_push_test_failed(api, project, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("campaigns.testpush.delivery_send_one", explode)
    response = api.client.post(
        url(project, False),
        {"title": "T", "body": "B", "device_token": APNS_TOKEN, "provider": "apns"},
    )
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "PUSH_TEST_FAILED", "message": "Internal error.", "details": {}}
    }


def test_command(project):
    out = io.StringIO()
    call_command(
        "send_test_push",
        project=str(project.id),
        title="T",
        body="B",
        device_token=APNS_TOKEN,
        provider="apns",
        json=True,
        stdout=out,
    )
    result = json.loads(out.getvalue())
    assert result["status"] == "sent" and result["provider"] == "apns"
    with pytest.raises(CommandError, match="PUSH_FAILED"):
        call_command(
            "send_test_push",
            project=str(project.id),
            title="T",
            body="B",
            device_token=DEAD_APNS,
            provider="apns",
            stdout=io.StringIO(),
        )


# --- content goes through the campaign's validators and size check -----------------------

OVERSIZED: dict[str, Any] = {
    "code": "PAYLOAD_TOO_LARGE",
    # The payload furthest over its limit: web push's, 54 bytes over (FCM's is 2).
    "message": "The webpush payload would be 4047 bytes; the limit is 3993. "
    "Shorten the text or data.",
    "details": {
        "limit": 3993,
        "payloads": [
            {"provider": "fcm", "language": None, "size": 4098, "limit": 4096},
            {"provider": "webpush", "language": None, "size": 4047, "limit": 3993},
        ],
    },
}


def test_oversized_content_is_refused_as_for_a_campaign(api, project):
    # 1982 two-byte characters: the largest FCM message is 4098 bytes with a delivery id,
    # the web push JSON 4047. A test push to an APNs token is measured for every
    # provider, as a campaign is.
    payload = {"title": "T", "body": "é" * 1982, "device_token": APNS_TOKEN, "provider": "apns"}

    response = api.client.post(url(project, False), payload)

    assert response.status_code == 400
    assert response.json() == {"error": OVERSIZED}
    assert PushDelivery.objects.count() == 0
    assert PushToken.objects.count() == 0


def test_command_refuses_oversized_content_as_the_api_does(project):
    out = io.StringIO()

    with pytest.raises(CommandError) as refused:
        call_command(
            "send_test_push",
            project=str(project.id),
            title="T",
            body="é" * 1982,
            device_token=APNS_TOKEN,
            provider="apns",
            json=True,
            stdout=out,
        )

    assert str(refused.value) == f"PAYLOAD_TOO_LARGE: {OVERSIZED['message']}"
    assert json.loads(out.getvalue()) == {
        "error": {"code": "PAYLOAD_TOO_LARGE", **OVERSIZED["details"]}
    }
    assert PushDelivery.objects.count() == 0
    assert PushToken.objects.count() == 0


def test_localizations_are_capped_as_for_a_campaign(api, project):
    localizations = {f"es-{i:03d}": {"title": "t"} for i in range(301)}
    payload = {"title": "T", "body": "B", "app_user_id": str(uuid.UUID(int=1))}

    response = api.client.post(url(project, False), {**payload, "localizations": localizations})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "At most 300 localizations (one per language); got 301.",
            "details": {"field": "localizations"},
        }
    }


# --- web push: a subscription is reached with its keys ----------------------------------------


@pytest.fixture
def web_project(project, sim):
    project, _ = project_generate_vapid(project=project, subject="mailto:ops@example.com")
    project.webpush_ca_file = str(sim.credentials.ca_file)
    project.save(update_fields=["webpush_ca_file"])
    return project


def test_a_browser_subscription_gets_a_test_push_and_is_registered(api, web_project, sim):
    sim.configure({"webpush": {"keep_payloads": True}})
    [browser] = sim.mint_webpush_subscriptions(1)
    body = {"title": "T", "body": "B", "subscription": browser, "url": "https://example.com/x"}

    response = api.client.post(url(web_project, False), body)

    assert response.status_code == 200, response.json()
    answer = response.json()
    assert (answer["provider"], answer["status"]) == ("webpush", "sent")
    token = PushToken.objects.get(token=browser["endpoint"])
    assert (token.provider, token.platform, token.keys) == ("webpush", "web", browser["keys"])
    # The simulator decrypted it with the browser's keys.
    received = sim.stats(tokens=True)["webpush"]["payloads"][browser["endpoint"]]
    assert received["notification"] == {"title": "T", "body": "B"}
    assert received["herald_delivery_id"] == str(answer["delivery_id"])

    # Registered now, its endpoint is enough (API and command alike).
    again = {"title": "T", "body": "B", "device_token": browser["endpoint"], "provider": "webpush"}
    response = api.client.post(url(web_project, False), again)
    assert response.status_code == 200 and response.json()["provider"] == "webpush"
    out = io.StringIO()
    call_command(
        "send_test_push",
        project=str(web_project.id),
        title="T",
        body="B",
        device_token=browser["endpoint"],
        provider="webpush",
        json=True,
        stdout=out,
    )
    assert json.loads(out.getvalue())["status"] == "sent"
    assert sim.stats(tokens=True)["webpush"]["tokens"][browser["endpoint"]] == 3
    assert PushToken.objects.filter(provider="webpush").count() == 1


def test_the_command_takes_a_subscription(web_project, sim):
    [browser] = sim.mint_webpush_subscriptions(1)
    out = io.StringIO()
    call_command(
        "send_test_push",
        project=str(web_project.id),
        title="T",
        body="B",
        subscription=json.dumps(browser),
        stdout=out,
    )
    assert out.getvalue().startswith("sent: delivery ")
    assert " via webpush, " in out.getvalue()
    with pytest.raises(CommandError, match="--subscription must be a JSON object"):
        call_command(
            "send_test_push",
            project=str(web_project.id),
            title="T",
            body="B",
            subscription="{nope",
            stdout=io.StringIO(),
        )


ENDPOINT = "https://push.example.com/send/abc"


@pytest.mark.parametrize(
    ("extra", "status", "code", "field"),
    [
        # An endpoint alone cannot be encrypted for: it must be registered first.
        (
            {"device_token": ENDPOINT, "provider": "webpush"},
            400,
            "INVALID_SUBSCRIPTION",
            "subscription",
        ),
        ({"subscription": {"endpoint": ENDPOINT}}, 400, "INVALID_SUBSCRIPTION", None),
        ({"subscription": "x"}, 400, "INVALID_SUBSCRIPTION", "subscription"),
        (
            {"subscription": {}, "device_token": APNS_TOKEN, "provider": "apns"},
            400,
            "VALIDATION_ERROR",
            "subscription",
        ),
        (
            {"device_token": "http://push.example.com/x", "provider": "webpush"},
            400,
            "INVALID_TOKEN_FORMAT",
            "device_token",
        ),
    ],
)
def test_web_push_targets_refused_write_nothing(api, web_project, extra, status, code, field):
    response = api.client.post(url(web_project, False), {"title": "T", "body": "B", **extra})

    assert response.status_code == status, response.json()
    error = response.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert error["details"]["field"] == field
    assert PushDelivery.objects.count() == 0
    assert PushToken.objects.count() == 0
