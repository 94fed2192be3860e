"""Web push subscriptions as tokens: registration, validation, re-registration,
what the API shows (never `auth`), import_tokens rows, and the audience counts."""

from __future__ import annotations

import base64
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management import call_command

from core.models import ApiKey
from delivery.models import PushToken
from segments.models import AppUser
from segments.selectors import audience_counts
from segments.services import WEBPUSH_ENDPOINT_MAX
from tests.segments.helpers import audience_state, client_for, error, make_project

pytestmark = pytest.mark.django_db

ENDPOINT = "https://fcm.googleapis.com/fcm/send/dQw4w9WgXcQ:APA91bHun4MxP5egoKMwt2KZFBaFUH"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def point(secret: int) -> bytes:
    key = ec.derive_private_key(secret, ec.SECP256R1())
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


P256DH = b64url(point(1234567))
P256DH_2 = b64url(point(7654321))
AUTH = b64url(bytes(range(16)))
AUTH_2 = b64url(bytes(range(16, 32)))
OFF_CURVE = b64url(point(1234567)[:-1] + bytes([point(1234567)[-1] ^ 1]))


def subscription(endpoint: str = ENDPOINT, p256dh: str = P256DH, auth: str = AUTH) -> Any:
    return {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": p256dh, "auth": auth}}


@pytest.fixture
def project() -> Any:
    return make_project()


@pytest.fixture
def client(project: Any) -> Any:
    return client_for(project, scope=ApiKey.Scope.CLIENT)


def url(project: Any) -> str:
    return f"/v1/projects/{project.id}/tokens"


def test_register_a_subscription(client: Any, project: Any) -> None:
    body = {"provider": "webpush", "subscription": subscription(), "external_id": "u-1"}
    response = client.post(url(project), body)

    assert response.status_code == 201
    token = PushToken.objects.get()
    assert (token.provider, token.platform, token.token) == ("webpush", "web", ENDPOINT)
    assert token.keys == {"p256dh": P256DH, "auth": AUTH}
    answer = response.json()
    assert answer["token"] == ENDPOINT
    assert answer["provider"] == "webpush"
    assert answer["platform"] == "web"
    assert answer["p256dh"] == P256DH
    assert answer["external_id"] == "u-1"
    assert AUTH not in response.content.decode()
    assert "auth" not in answer


def test_padded_keys_and_an_expiration_time_are_accepted(client: Any, project: Any) -> None:
    padded = subscription(p256dh=P256DH + "=", auth=AUTH + "==")
    padded["expirationTime"] = 1_900_000_000_000
    response = client.post(url(project), {"provider": "webpush", "subscription": padded})
    assert response.status_code == 201
    assert PushToken.objects.get().keys == {"p256dh": P256DH, "auth": AUTH}


def test_re_registering_updates_keys_and_reactivates(client: Any, project: Any) -> None:
    client.post(url(project), {"provider": "webpush", "subscription": subscription()})
    PushToken.objects.update(active=False, invalid_reason="gone")

    body = {"provider": "webpush", "subscription": subscription(p256dh=P256DH_2, auth=AUTH_2)}
    response = client.post(url(project), body)

    assert response.status_code == 200
    token = PushToken.objects.get()
    assert token.active is True and token.invalid_reason == ""
    assert token.keys == {"p256dh": P256DH_2, "auth": AUTH_2}
    assert response.json()["p256dh"] == P256DH_2
    assert AUTH_2 not in response.content.decode()


def test_a_long_endpoint_fits(client: Any, project: Any) -> None:
    endpoint = "https://push.example.com/" + "a" * (WEBPUSH_ENDPOINT_MAX - 25)
    assert len(endpoint) == WEBPUSH_ENDPOINT_MAX
    response = client.post(
        url(project), {"provider": "webpush", "subscription": subscription(endpoint)}
    )
    assert response.status_code == 201
    assert PushToken.objects.get().token == endpoint


def with_keys(**keys: Any) -> dict[str, Any]:
    sub = subscription()
    sub["keys"] = {**sub["keys"], **keys}
    return sub


BAD = [
    ({"subscription": None}, "INVALID_SUBSCRIPTION", "subscription"),
    ({"subscription": []}, "INVALID_SUBSCRIPTION", "subscription"),
    ({}, "INVALID_SUBSCRIPTION", "subscription"),
    ({"token": "x" * 100, "subscription": subscription()}, "INVALID_SUBSCRIPTION", "token"),
    ({"platform": "android", "subscription": subscription()}, "INVALID_PLATFORM", "platform"),
    (
        {"subscription": {**subscription(), "extra": 1}},
        "INVALID_SUBSCRIPTION",
        "subscription.extra",
    ),
    (
        {"subscription": {**subscription(), "expirationTime": "soon"}},
        "INVALID_SUBSCRIPTION",
        "subscription.expirationTime",
    ),
    ({"subscription": subscription(endpoint="")}, "INVALID_SUBSCRIPTION", "subscription.endpoint"),
    (
        {"subscription": subscription(endpoint="http://push.example.com/x")},
        "INVALID_SUBSCRIPTION",
        "subscription.endpoint",
    ),
    (
        {"subscription": subscription(endpoint="https://user:pw@push.example.com/x")},
        "INVALID_SUBSCRIPTION",
        "subscription.endpoint",
    ),
    (
        {"subscription": subscription(endpoint="https:///nohost")},
        "INVALID_SUBSCRIPTION",
        "subscription.endpoint",
    ),
    (
        {"subscription": subscription(endpoint="https://push.example.com/a b")},
        "INVALID_SUBSCRIPTION",
        "subscription.endpoint",
    ),
    (
        {"subscription": subscription(endpoint="https://x.com/" + "a" * WEBPUSH_ENDPOINT_MAX)},
        "INVALID_SUBSCRIPTION",
        "subscription.endpoint",
    ),
    (
        {"subscription": {**subscription(), "keys": None}},
        "INVALID_SUBSCRIPTION",
        "subscription.keys",
    ),
    (
        {"subscription": with_keys(secret="x")},
        "INVALID_SUBSCRIPTION",
        "subscription.keys.secret",
    ),
    ({"subscription": with_keys(p256dh=None)}, "INVALID_SUBSCRIPTION", "subscription.keys.p256dh"),
    ({"subscription": with_keys(p256dh="***")}, "INVALID_SUBSCRIPTION", "subscription.keys.p256dh"),
    (
        {"subscription": with_keys(p256dh=b64url(b"\x04" + bytes(63)))},
        "INVALID_SUBSCRIPTION",
        "subscription.keys.p256dh",
    ),
    (
        {"subscription": with_keys(p256dh=b64url(b"\x02" + point(1234567)[1:]))},
        "INVALID_SUBSCRIPTION",
        "subscription.keys.p256dh",
    ),
    (
        {"subscription": with_keys(p256dh=OFF_CURVE)},
        "INVALID_SUBSCRIPTION",
        "subscription.keys.p256dh",
    ),
    ({"subscription": with_keys(auth=None)}, "INVALID_SUBSCRIPTION", "subscription.keys.auth"),
    (
        {"subscription": with_keys(auth=b64url(bytes(15)))},
        "INVALID_SUBSCRIPTION",
        "subscription.keys.auth",
    ),
    ({"subscription": with_keys(auth="a+b/")}, "INVALID_SUBSCRIPTION", "subscription.keys.auth"),
]


@pytest.mark.parametrize(("extra", "code", "field"), BAD)
def test_bad_subscriptions_are_refused_and_change_nothing(
    client: Any, project: Any, extra: dict[str, Any], code: str, field: str
) -> None:
    before = audience_state()
    response = client.post(url(project), {"provider": "webpush", **extra})
    assert error(response) == (400, code, {"field": field})
    assert audience_state() == before


def test_a_subscription_is_for_webpush_only(client: Any, project: Any) -> None:
    body = {"provider": "fcm", "platform": "web", "token": "a" * 150, "subscription": {}}
    assert error(client.post(url(project), body)) == (
        400,
        "VALIDATION_ERROR",
        {"field": "subscription"},
    )
    assert not PushToken.objects.exists()


def test_audience_counts_webpush_and_zero_elsewhere(client: Any, project: Any) -> None:
    client.post(url(project), {"provider": "webpush", "subscription": subscription()})
    counts = audience_counts(PushToken.objects.filter(project=project, active=True))
    assert counts["by_provider"] == {"apns": 0, "fcm": 0, "webpush": 1}
    assert counts["by_platform"] == {"ios": 0, "android": 0, "web": 1}


def test_token_kinds_know_webpush(client: Any, project: Any) -> None:
    from django.db import connection

    from segments.rules import ANY_TOKEN_BIT, TOKEN_KIND_BITS

    client.post(
        url(project), {"provider": "webpush", "subscription": subscription(), "external_id": "w"}
    )
    user = AppUser.objects.get(external_id="w")
    with connection.cursor() as cursor:
        cursor.execute("SELECT active_token_kinds FROM app_users WHERE id = %s", [user.pk])
        assert cursor.fetchone() == (
            ANY_TOKEN_BIT
            | TOKEN_KIND_BITS["platform"]["web"]
            | TOKEN_KIND_BITS["provider"]["webpush"],
        )


# ----------------------------------------------------------------- import_tokens


def run_import(path: Path, project: Any) -> dict[str, Any]:
    out = StringIO()
    call_command(
        "import_tokens", str(path), "--project", str(project.id), "--json", stdout=out,
        stderr=StringIO(),
    )  # fmt: skip
    summary = json.loads(out.getvalue())
    summary.pop("seconds")
    return summary


def test_import_csv_with_webpush_rows(tmp_path: Path, project: Any) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(
        "external_id,token,provider,platform,endpoint,p256dh,auth\n"
        f"u1,,webpush,,{ENDPOINT},{P256DH},{AUTH}\n"  # 2 new
        f"u2,,webpush,web,{ENDPOINT}/2,{OFF_CURVE},{AUTH}\n"  # 3 refused
        f"u3,,webpush,,{ENDPOINT}/3,{P256DH},\n"  # 4 refused: no auth
        f"u4,,fcm,web,{ENDPOINT}/4,{P256DH},{AUTH}\n"  # 5 refused: fcm needs its token
        f"u1,,webpush,,{ENDPOINT},{P256DH_2},{AUTH_2}\n"  # 6 updates the keys
    )
    summary = run_import(path, project)
    assert summary["imported"] == 1 and summary["updated"] == 1 and summary["rejected"] == 3
    assert summary["rejections"] == {
        "invalid_subscription": {"count": 2, "lines": [3, 4]},
        "missing_token": {"count": 1, "lines": [5]},
    }
    token = PushToken.objects.get()
    assert (token.provider, token.platform, token.token) == ("webpush", "web", ENDPOINT)
    assert token.keys == {"p256dh": P256DH_2, "auth": AUTH_2}
    assert token.app_user is not None and token.app_user.external_id == "u1"

    # Re-running ends in the same state (lines 2 and 6 each set u1's keys again).
    again = run_import(path, project)
    assert (again["imported"], again["updated"], again["rejected"]) == (0, 2, 3)
    assert PushToken.objects.get().keys == {"p256dh": P256DH_2, "auth": AUTH_2}


def test_import_jsonl_with_webpush_and_apns(tmp_path: Path, project: Any) -> None:
    from tests.segments.helpers import apns_token

    path = tmp_path / "subs.jsonl"
    lines = [
        {
            "external_id": "u1",
            "tokens": [
                {"provider": "webpush", "subscription": subscription()},
                {"token": apns_token(1), "provider": "apns", "platform": "ios"},
            ],
        },
        {"external_id": "u2", "tokens": [{"provider": "webpush", "subscription": {}}]},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = run_import(path, project)
    assert (summary["imported"], summary["rejected"]) == (1, 1)
    assert summary["rejections"] == {"invalid_subscription": {"count": 1, "lines": [2]}}
    rows = {t.provider: t for t in PushToken.objects.all()}
    assert rows["webpush"].keys == {"p256dh": P256DH, "auth": AUTH}
    assert rows["apns"].keys is None


def test_a_test_push_to_an_unknown_endpoint_makes_no_keyless_token(project: Any) -> None:
    admin = client_for(project)
    body = {"title": "t", "body": "b", "device_token": ENDPOINT, "provider": "webpush"}
    response = admin.post("/admin/push/test", body)
    assert error(response) == (400, "INVALID_SUBSCRIPTION", {"field": "subscription"})
    assert not PushToken.objects.exists()


def test_a_test_push_to_a_subscription_fails_without_vapid_keys(client: Any, project: Any) -> None:
    client.post(url(project), {"provider": "webpush", "subscription": subscription()})
    admin = client_for(project)
    body = {"title": "t", "body": "b", "device_token": ENDPOINT, "provider": "webpush"}
    response = admin.post("/admin/push/test", body)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "PUSH_FAILED"
    assert "VAPID" in response.json()["error"]["message"]


# --- unregistering: an endpoint holds "/", so it goes in the body ------------------------------


def test_a_browser_unsubscribing_unregisters_its_endpoint(client: Any, project: Any) -> None:
    client.post(url(project), {"provider": "webpush", "subscription": subscription()})
    other = "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk"
    client.post(url(project), {"provider": "webpush", "subscription": subscription(other)})

    body = {"token": ENDPOINT, "provider": "webpush"}
    response = client.post(f"{url(project)}/unregister", body)

    assert response.status_code == 204
    gone = PushToken.objects.get(token=ENDPOINT)
    assert (gone.active, gone.invalid_reason) == (False, "unregistered")
    assert PushToken.objects.get(token=other).active is True
    # Again: a no-op, as DELETE is; without provider too.
    assert client.post(f"{url(project)}/unregister", {"token": ENDPOINT}).status_code == 204
    # Registering it again (the browser subscribed again) brings it back.
    client.post(url(project), {"provider": "webpush", "subscription": subscription()})
    assert PushToken.objects.get(token=ENDPOINT).active is True


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "MISSING_TOKEN"),
        ({"token": ""}, 400, "MISSING_TOKEN"),
        ({"token": 5}, 400, "INVALID_TOKEN_FORMAT"),
        ({"token": "x" * (WEBPUSH_ENDPOINT_MAX + 1)}, 400, "INVALID_TOKEN_FORMAT"),
        ({"token": ENDPOINT, "provider": "gcm"}, 400, "INVALID_PROVIDER"),
        ({"token": ENDPOINT, "extra": 1}, 400, "VALIDATION_ERROR"),
        ({"token": ENDPOINT + "/other"}, 404, "NOT_FOUND"),
        ({"token": ENDPOINT, "provider": "fcm"}, 404, "NOT_FOUND"),
    ],
)
def test_unregister_refusals_change_nothing(
    client: Any, project: Any, body: dict[str, Any], status: int, code: str
) -> None:
    client.post(url(project), {"provider": "webpush", "subscription": subscription()})

    response = client.post(f"{url(project)}/unregister", body)

    assert error(response)[:2] == (status, code)
    assert PushToken.objects.get(token=ENDPOINT).active is True


def test_another_project_cannot_unregister_a_subscription(client: Any, project: Any) -> None:
    client.post(url(project), {"provider": "webpush", "subscription": subscription()})
    other = make_project()
    other_client = client_for(other, scope=ApiKey.Scope.CLIENT)

    response = other_client.post(f"{url(other)}/unregister", {"token": ENDPOINT})

    assert error(response)[:2] == (404, "NOT_FOUND")
    assert PushToken.objects.get(token=ENDPOINT).active is True
