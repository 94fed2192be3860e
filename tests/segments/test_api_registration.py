"""Device registration API for apps: user upsert, token register/refresh/unregister."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from core.errors import InvalidInput
from core.models import ApiKey
from delivery.models import PushToken
from segments.models import AppUser
from segments.services import clean_attributes
from tests.factories import api_client
from tests.segments.helpers import (
    APNS_TOKEN,
    FCM_TOKEN,
    audience_state,
    client_for,
    error,
    make_project,
    make_token,
    make_user,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def project() -> Any:
    return make_project()


@pytest.fixture
def client(project: Any) -> Any:
    """Apps hold client-scoped keys: every registration test uses one."""
    return client_for(project, scope=ApiKey.Scope.CLIENT)


def users_url(project: Any, external_id: str) -> str:
    return f"/v1/projects/{project.id}/users/{external_id}"


def tokens_url(project: Any, token: str | None = None) -> str:
    base = f"/v1/projects/{project.id}/tokens"
    return base if token is None else f"{base}/{token}"


# ------------------------------------------------------------------------- users


def test_put_creates_then_merges_attributes(client: Any, project: Any) -> None:
    before = timezone.now()
    response = client.put(
        users_url(project, "u-1"),
        {
            "attributes": {
                "country": "us",
                "language": "pt_BR",
                "age": 31,
                "score": 2.5,
                "vip": True,
                "tags": ["a", "b"],
                "signup": "2024-03-01T10:00:00+02:00",
                "birthday": "1990-05-17",
                "naive": "2024-03-01T10:00",
                "note": "hello",
            }
        },
    )
    assert response.status_code == 201
    user = AppUser.objects.get()
    expected = {
        "country": "US",
        "language": "pt-BR",
        "age": 31,
        "score": 2.5,
        "vip": True,
        "tags": ["a", "b"],
        "signup": "2024-03-01T08:00:00.000Z",
        "birthday": "1990-05-17",
        "naive": "2024-03-01T10:00:00.000Z",
        "note": "hello",
    }
    assert response.json() == {
        "id": str(user.id),
        "project_id": str(project.id),
        "external_id": "u-1",
        "attributes": expected,
        "created_at": response.json()["created_at"],
        "last_seen_at": response.json()["last_seen_at"],
    }
    assert user.attributes == expected
    assert user.last_seen_at is not None and user.last_seen_at >= before

    response = client.put(
        users_url(project, "u-1/"), {"attributes": {"age": 32, "note": None, "new": "x"}}
    )
    assert response.status_code == 200
    user.refresh_from_db()
    del expected["note"]
    assert user.attributes == {**expected, "age": 32, "new": "x"}
    assert AppUser.objects.count() == 1


def test_put_without_attributes_just_upserts(client: Any, project: Any) -> None:
    assert client.put(users_url(project, "u-1"), {}).status_code == 201
    assert client.put(users_url(project, "u-1"), {}).status_code == 200
    assert list(AppUser.objects.values_list("external_id", "attributes")) == [("u-1", {})]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"attributes": {"profile": {"a": 1}}}, "INVALID_ATTRIBUTES", "attributes.profile"),
        ({"attributes": {"tags": [1, 2]}}, "INVALID_ATTRIBUTES", "attributes.tags"),
        ({"attributes": {"tags": ["x"] * 101}}, "INVALID_ATTRIBUTES", "attributes.tags"),
        ({"attributes": {"platform": "ios"}}, "INVALID_ATTRIBUTES", "attributes.platform"),
        (
            {"attributes": {"created_at": "2024-01-01"}},
            "INVALID_ATTRIBUTES",
            "attributes.created_at",
        ),
        ({"attributes": {"bad key": 1}}, "INVALID_ATTRIBUTES", "attributes.bad key"),
        ({"attributes": {"k": "x" * 1025}}, "INVALID_ATTRIBUTES", "attributes.k"),
        ({"attributes": {"n": 2**60}}, "INVALID_ATTRIBUTES", "attributes.n"),
        ({"attributes": {"country": 1}}, "INVALID_ATTRIBUTES", "attributes.country"),
        ({"attributes": {"timezone": "Mars/Base"}}, "INVALID_ATTRIBUTES", "attributes.timezone"),
        ({"attributes": {f"k{i}": i for i in range(101)}}, "INVALID_ATTRIBUTES", "attributes"),
        ({"attributes": ["a"]}, "INVALID_ATTRIBUTES", "attributes"),
        ({"attrs": {}}, "VALIDATION_ERROR", "attrs"),
    ],
)
def test_put_refusals_write_nothing(
    client: Any, project: Any, body: dict[str, Any], code: str, field: str
) -> None:
    make_user(project, "u-1", {"keep": 1})
    before = audience_state()
    response = client.put(users_url(project, "u-1"), body, format="json")
    assert error(response) == (400, code, {"field": field})
    response = client.put(users_url(project, "u-2"), body, format="json")
    assert error(response) == (400, code, {"field": field})
    assert audience_state() == before


def test_non_finite_numbers_are_refused() -> None:
    """JSON bodies cannot carry them (INVALID_BODY), but the import path can."""
    with pytest.raises(InvalidInput) as caught:
        clean_attributes({"n": float("inf")})
    assert (caught.value.code, caught.value.details) == (
        "INVALID_ATTRIBUTES",
        {"field": "attributes.n"},
    )


def test_put_refuses_a_merge_over_the_limits(client: Any, project: Any) -> None:
    make_user(project, "u-1", {f"k{i}": i for i in range(100)})
    before = audience_state()
    response = client.put(users_url(project, "u-1"), {"attributes": {"one_more": 1}})
    assert error(response) == (400, "INVALID_ATTRIBUTES", {"field": "attributes"})
    big = {f"s{i}": "x" * 1000 for i in range(17)}
    response = client.put(users_url(project, "u-2"), {"attributes": big})
    assert error(response) == (400, "INVALID_ATTRIBUTES", {"field": "attributes"})
    assert audience_state() == before


def test_put_refuses_a_too_long_external_id(client: Any, project: Any) -> None:
    response = client.put(users_url(project, "x" * 256), {})
    assert error(response) == (400, "INVALID_EXTERNAL_ID", {"field": "externalId"})
    assert AppUser.objects.count() == 0


# ------------------------------------------------------------------------ tokens


def test_register_creates_user_and_token(client: Any, project: Any) -> None:
    before = timezone.now()
    response = client.post(
        tokens_url(project),
        {
            "token": APNS_TOKEN.upper(),
            "provider": "APNS",
            "platform": "ios",
            "external_id": "u-1",
            "locale": "fr_FR",
            "timezone": "Europe/Paris",
            "app_version": "2.1.0",
        },
    )
    assert response.status_code == 201
    token = PushToken.objects.get()
    user = AppUser.objects.get()
    assert response.json() == {
        "id": token.id,
        "token": APNS_TOKEN,
        "provider": "apns",
        "platform": "ios",
        "active": True,
        "app_user_id": str(user.id),
        "external_id": "u-1",
        "locale": "fr_FR",
        "timezone": "Europe/Paris",
        "app_version": "2.1.0",
        "p256dh": None,
        "created_at": response.json()["created_at"],
        "last_registered_at": response.json()["last_registered_at"],
        "invalidated_at": None,
        "invalid_reason": "",
    }
    assert user.attributes == {
        "language": "fr-FR",
        "timezone": "Europe/Paris",
        "app_version": "2.1.0",
    }
    assert user.last_seen_at is not None and user.last_seen_at >= before


def test_register_is_idempotent(client: Any, project: Any) -> None:
    body = {"token": FCM_TOKEN, "provider": "fcm", "platform": "android", "external_id": "u-1"}
    first = client.post(tokens_url(project), body)
    assert first.status_code == 201
    registered = PushToken.objects.get().last_registered_at
    second = client.post(tokens_url(project), body)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert (PushToken.objects.count(), AppUser.objects.count()) == (1, 1)
    assert PushToken.objects.get().last_registered_at >= registered


def test_reregistering_reactivates_and_moves_the_token(client: Any, project: Any) -> None:
    old_owner = make_user(project, "old")
    token = make_token(project, old_owner, APNS_TOKEN, active=False)
    PushToken.objects.filter(pk=token.pk).update(
        invalidated_at=timezone.now(), invalid_reason="BadDeviceToken", locale="en"
    )
    response = client.post(
        tokens_url(project),
        {"token": APNS_TOKEN, "provider": "apns", "platform": "ios", "external_id": "new"},
    )
    assert response.status_code == 200
    token.refresh_from_db()
    new_owner = AppUser.objects.get(external_id="new")
    assert (token.active, token.invalidated_at, token.invalid_reason) == (True, None, "")
    assert (token.app_user_id, token.locale) == (new_owner.id, "en")
    assert response.json()["external_id"] == "new"


def test_registration_without_external_id_keeps_the_owner_and_null_detaches(
    client: Any, project: Any
) -> None:
    owner = make_user(project, "owner")
    token = make_token(project, owner, FCM_TOKEN, provider="fcm", platform="web")
    body = {"token": FCM_TOKEN, "provider": "fcm", "platform": "web"}
    assert client.post(tokens_url(project), body).json()["external_id"] == "owner"
    owner.refresh_from_db()
    assert owner.last_seen_at is not None
    response = client.post(tokens_url(project), {**body, "external_id": None})
    assert response.json()["external_id"] is None
    token.refresh_from_db()
    assert token.app_user_id is None


def test_registration_over_the_attribute_limit_writes_nothing(client: Any, project: Any) -> None:
    make_user(project, "full", {f"k{i}": i for i in range(100)})
    before = audience_state()
    body = {
        "token": APNS_TOKEN,
        "provider": "apns",
        "platform": "ios",
        "external_id": "full",
        "locale": "fr",  # would add a 101st attribute, language
    }
    assert error(client.post(tokens_url(project), body)) == (
        400,
        "INVALID_ATTRIBUTES",
        {"field": "attributes"},
    )
    assert audience_state() == before


def test_anonymous_registration(client: Any, project: Any) -> None:
    body = {"token": FCM_TOKEN, "provider": "fcm", "platform": "ios"}
    response = client.post(tokens_url(project), body)
    assert response.status_code == 201
    assert (response.json()["app_user_id"], AppUser.objects.count()) == (None, 0)


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"provider": "apns", "platform": "ios"}, "MISSING_TOKEN", "token"),
        ({"token": "", "provider": "apns", "platform": "ios"}, "MISSING_TOKEN", "token"),
        (
            {"token": APNS_TOKEN, "provider": "gcm", "platform": "ios"},
            "INVALID_PROVIDER",
            "provider",
        ),
        ({"token": APNS_TOKEN, "platform": "ios"}, "INVALID_PROVIDER", "provider"),
        (
            {"token": APNS_TOKEN, "provider": "apns", "platform": "tv"},
            "INVALID_PLATFORM",
            "platform",
        ),
        (
            {"token": APNS_TOKEN, "provider": "apns", "platform": "android"},
            "INVALID_PLATFORM",
            "platform",
        ),
        ({"token": APNS_TOKEN, "provider": "apns"}, "INVALID_PLATFORM", "platform"),
        (
            {"token": "zz" * 32, "provider": "apns", "platform": "ios"},
            "INVALID_TOKEN_FORMAT",
            "token",
        ),
        (
            {"token": "ab" * 31, "provider": "apns", "platform": "ios"},
            "INVALID_TOKEN_FORMAT",
            "token",
        ),
        (
            {"token": "a" * 201, "provider": "apns", "platform": "ios"},
            "INVALID_TOKEN_FORMAT",
            "token",
        ),
        ({"token": 12, "provider": "apns", "platform": "ios"}, "INVALID_TOKEN_FORMAT", "token"),
        (
            {"token": "a" * 99, "provider": "fcm", "platform": "android"},
            "INVALID_TOKEN_FORMAT",
            "token",
        ),
        (
            {"token": "a" * 513, "provider": "fcm", "platform": "android"},
            "INVALID_TOKEN_FORMAT",
            "token",
        ),
        (
            {"token": FCM_TOKEN + "!", "provider": "fcm", "platform": "android"},
            "INVALID_TOKEN_FORMAT",
            "token",
        ),
        (
            {"token": APNS_TOKEN, "provider": "apns", "platform": "ios", "external_id": ""},
            "INVALID_EXTERNAL_ID",
            "external_id",
        ),
        (
            {"token": APNS_TOKEN, "provider": "apns", "platform": "ios", "locale": "fr FR"},
            "VALIDATION_ERROR",
            "locale",
        ),
        (
            {"token": APNS_TOKEN, "provider": "apns", "platform": "ios", "timezone": "Nowhere"},
            "VALIDATION_ERROR",
            "timezone",
        ),
        (
            {"token": APNS_TOKEN, "provider": "apns", "platform": "ios", "app_version": 2},
            "VALIDATION_ERROR",
            "app_version",
        ),
        (
            {"token": APNS_TOKEN, "provider": "apns", "platform": "ios", "active": False},
            "VALIDATION_ERROR",
            "active",
        ),
    ],
)
def test_register_refusals_write_nothing(
    client: Any, project: Any, body: dict[str, Any], code: str, field: str
) -> None:
    owner = make_user(project, "owner")
    make_token(project, owner, APNS_TOKEN, active=False)
    before = audience_state()
    assert error(client.post(tokens_url(project), body, format="json")) == (
        400,
        code,
        {"field": field},
    )
    assert audience_state() == before


def test_unregister(client: Any, project: Any) -> None:
    token = make_token(project, make_user(project, "u"), APNS_TOKEN)
    assert client.delete(tokens_url(project, APNS_TOKEN.upper())).status_code == 204
    token.refresh_from_db()
    assert (token.active, token.invalid_reason) == (False, "unregistered")
    first_invalidated = token.invalidated_at
    assert first_invalidated is not None
    assert client.delete(tokens_url(project, APNS_TOKEN) + "/").status_code == 204
    token.refresh_from_db()
    assert token.invalidated_at == first_invalidated


def test_unregister_by_provider(client: Any, project: Any) -> None:
    hex_fcm = "ab" * 60  # a hex string long enough to be either provider's token
    apns = make_token(project, None, hex_fcm)
    fcm = make_token(project, None, hex_fcm, provider="fcm", platform="android")
    assert client.delete(tokens_url(project, hex_fcm) + "?provider=fcm").status_code == 204
    apns.refresh_from_db()
    fcm.refresh_from_db()
    assert (apns.active, fcm.active) == (True, False)


def test_unregister_errors_write_nothing(client: Any, project: Any) -> None:
    make_token(project, None, APNS_TOKEN)
    make_token(make_project("other"), None, FCM_TOKEN, provider="fcm", platform="android")
    before = audience_state()
    assert error(client.delete(tokens_url(project, FCM_TOKEN))) == (404, "NOT_FOUND", {})
    assert error(client.delete(tokens_url(project, APNS_TOKEN) + "?provider=fcm")) == (
        404,
        "NOT_FOUND",
        {},
    )
    assert error(client.delete(tokens_url(project, APNS_TOKEN) + "?provider=x")) == (
        400,
        "INVALID_PROVIDER",
        {"field": "provider"},
    )
    assert audience_state() == before


def test_registration_on_another_project_is_404(client: Any, project: Any) -> None:
    other = make_project("other")
    make_token(other, None, APNS_TOKEN)
    before = audience_state()
    body = {"token": APNS_TOKEN, "provider": "apns", "platform": "ios"}
    assert error(client.post(tokens_url(other), body))[:2] == (404, "NOT_FOUND")
    assert error(client.put(users_url(other, "u"), {}))[:2] == (404, "NOT_FOUND")
    assert error(client.delete(tokens_url(other, APNS_TOKEN)))[:2] == (404, "NOT_FOUND")
    assert error(api_client().post(tokens_url(project), body))[:2] == (401, "UNAUTHENTICATED")
    assert audience_state() == before


def test_admin_keys_may_register_too(project: Any) -> None:
    admin = client_for(project)
    body = {"token": APNS_TOKEN, "provider": "apns", "platform": "ios", "external_id": "u"}
    assert admin.post(tokens_url(project), body).status_code == 201
    assert admin.put(users_url(project, "u"), {"attributes": {"a": 1}}).status_code == 200
    assert admin.delete(tokens_url(project, APNS_TOKEN)).status_code == 204
