"""Authentication, project scoping and the rate limit on the campaign API.

DESIGN.md: `Authorization: Bearer <api key>` or a logged-in staff session; a key
used on another project's URL gets 404 NOT_FOUND (no leaks); no/invalid key is
401 UNAUTHENTICATED; client-scoped keys may call only device registration.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.test import APIClient

from campaigns.models import PushCampaign
from core.models import ApiKey, Project
from core.throttling import Tier, counter_key
from tests.factories import (
    CampaignFactory,
    ProjectFactory,
    add_member,
    api_client,
    create_api_key,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)


def base(project_id: object) -> str:
    return f"/admin/projects/{project_id}/push/campaigns"


def error(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


# Every campaign route: (method, path under the project base, body).
ROUTES: list[tuple[str, str, Any]] = [
    ("get", "", None),
    ("post", "", {"title": "t", "body": "b"}),
    ("get", "/{id}", None),
    ("patch", "/{id}", {"title": "changed"}),
    ("delete", "/{id}", None),
    ("post", "/{id}/send", None),
    ("post", "/{id}/cancel", None),
    ("get", "/{id}/deliveries", None),
    ("get", "/{id}/runs", None),
    ("get", "/{id}/audience", None),
    ("post", "/{id}/push", {"device_ids": ["ab" * 32]}),
    ("post", "/test", {"device_token": "ab" * 32, "provider": "apns"}),
]
ROUTE_IDS = [f"{m.upper()} {p or '/'}" for m, p, _ in ROUTES]
CAMPAIGN_ROUTES = [r for r in ROUTES if "{id}" in r[1]]
CAMPAIGN_ROUTE_IDS = [i for i, r in zip(ROUTE_IDS, ROUTES, strict=True) if "{id}" in r[1]]


def call(client: APIClient, prefix: str, route: tuple[str, str, Any], campaign_id: Any):
    method, path, body = route
    url = prefix + path.replace("{id}", str(campaign_id))
    return getattr(client, method)(url, body)


# --- API keys -----------------------------------------------------------------------


def test_a_valid_key_is_accepted_and_its_last_use_recorded(api):
    client, project = api
    key = ApiKey.objects.get(project=project)
    assert key.last_used_at is None

    with time_machine.travel(NOW, tick=False):
        response = client.get(base(project.id))

    assert response.status_code == 200
    key.refresh_from_db()
    assert key.last_used_at == NOW


def test_last_use_is_recorded_at_most_once_a_minute(api):
    client, project = api
    key = ApiKey.objects.get(project=project)

    with time_machine.travel(NOW, tick=False):
        client.get(base(project.id))
    with time_machine.travel(NOW + timedelta(seconds=59), tick=False):
        client.get(base(project.id))
    key.refresh_from_db()
    assert key.last_used_at == NOW

    with time_machine.travel(NOW + timedelta(seconds=61), tick=False):
        client.get(base(project.id))
    key.refresh_from_db()
    assert key.last_used_at == NOW + timedelta(seconds=61)


def test_the_scheme_is_case_insensitive(api):
    _client, project = api
    _key, raw = create_api_key(project)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {raw}")

    assert client.get(base(project.id)).status_code == 200


INVALID = "Invalid API key."


@pytest.fixture
def keys(db):
    project = ProjectFactory()
    _key, raw = create_api_key(project)
    _revoked, revoked_raw = create_api_key(project, revoked=True)
    return project, raw, revoked_raw


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Authentication required."),
        ("", "Authentication required."),
        ("Bearer", "Malformed Authorization header."),
        ("Bearer {raw} extra", "Malformed Authorization header."),
        ("Bearer nonsense", INVALID),
        ("Bearer hk_", INVALID),
        ("Bearer hk_abc", INVALID),
        ("Bearer hk_0123456789abcdef0_secret", INVALID),
        ("Bearer hk_000000000000_secret", INVALID),
        ("Bearer {prefix}_wrong-secret", INVALID),
        ("Bearer {raw}x", INVALID),
        ("Bearer {revoked}", INVALID),
        ("Bearer hk_\u00e9\u00e9_secret", INVALID),
        ("Token {raw}", "Use 'Authorization: Bearer <api key>'."),
        ("Basic dXNlcjpwYXNz", "Use 'Authorization: Bearer <api key>'."),
        ("{raw}", "Use 'Authorization: Bearer <api key>'."),
    ],
)
def test_missing_or_invalid_credentials_are_401(keys, db_state, broker, header, message):
    project, raw, revoked_raw = keys
    campaign = CampaignFactory(project=project)
    client = APIClient()
    if header is not None:
        prefix = raw.rsplit("_", 1)[0]
        value = header.format(raw=raw, revoked=revoked_raw, prefix=prefix)
        client.credentials(HTTP_AUTHORIZATION=value)
    before = db_state()

    for route in (ROUTES[0], ROUTES[1]):  # a read and a write
        response = call(client, base(project.id), route, campaign.id)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="herald"'
        assert response.json() == error("UNAUTHENTICATED", message)
    assert db_state() == before
    assert broker.drain() == []


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_every_route_needs_a_valid_key(keys, db_state, broker, route):
    project, _raw, revoked_raw = keys
    campaign = CampaignFactory(project=project)
    before = db_state()

    for header in (None, f"Bearer {revoked_raw}"):
        client = APIClient()
        if header is not None:
            client.credentials(HTTP_AUTHORIZATION=header)
        response = call(client, base(project.id), route, campaign.id)
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert db_state() == before
    assert broker.drain() == []


def test_revoking_a_key_locks_it_out_at_once(api):
    client, project = api
    assert client.get(base(project.id)).status_code == 200

    ApiKey.objects.filter(project=project).update(revoked_at=NOW)

    response = client.get(base(project.id))
    assert response.status_code == 401
    assert response.json() == error("UNAUTHENTICATED", INVALID)


# --- project scoping: another project's URL is 404, like an unknown project -----------


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_a_key_on_another_projects_url_is_not_found(api, db_state, broker, route):
    client, _own = api
    other = ProjectFactory()
    campaign = CampaignFactory(project=other)
    before = db_state()

    foreign = call(client, base(other.id), route, campaign.id)
    unknown = call(client, base(uuid.uuid4()), route, campaign.id)
    garbage = call(client, base("not-a-project"), route, campaign.id)

    for response in (foreign, unknown, garbage):
        assert response.status_code == 404
        assert response.json() == error("NOT_FOUND", "Project not found.")
    assert db_state() == before
    assert broker.drain() == []


@pytest.mark.parametrize("route", CAMPAIGN_ROUTES, ids=CAMPAIGN_ROUTE_IDS)
def test_another_projects_campaign_under_the_own_project_url_is_not_found(
    api, db_state, broker, route
):
    client, project = api
    foreign = CampaignFactory(project=ProjectFactory())
    before = db_state()

    response = call(client, base(project.id), route, foreign.id)

    assert response.status_code == 404
    assert response.json() == error("NOT_FOUND", "Campaign not found.")
    assert db_state() == before
    assert broker.drain() == []


@pytest.mark.parametrize("route", CAMPAIGN_ROUTES, ids=CAMPAIGN_ROUTE_IDS)
def test_another_projects_campaign_via_the_alias_is_not_found(api, db_state, broker, route):
    client, _project = api
    foreign = CampaignFactory(project=ProjectFactory())
    before = db_state()

    response = call(client, "/admin/push", route, foreign.id)

    assert response.status_code == 404
    assert response.json() == error("NOT_FOUND", "Campaign not found.")
    assert db_state() == before
    assert broker.drain() == []


def test_the_alias_lists_only_the_keys_project(api):
    client, project = api
    own = CampaignFactory(project=project)
    CampaignFactory(project=ProjectFactory())

    response = client.get("/admin/push")

    assert [c["id"] for c in response.json()["results"]] == [str(own.id)]


# --- client-scoped keys: registration only -------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_client_scoped_keys_are_forbidden_on_campaign_routes(db_state, broker, route):
    project = ProjectFactory()
    _key, raw = create_api_key(project, scope=ApiKey.Scope.CLIENT)
    campaign = CampaignFactory(project=project)
    before = db_state()

    for url in (base(project.id), "/admin/push"):
        response = call(api_client(raw), url, route, campaign.id)
        assert response.status_code == 403
        assert response.json() == error(
            "FORBIDDEN", "This API key may only call the device registration API."
        )
    assert db_state() == before
    assert broker.drain() == []


# --- staff sessions ------------------------------------------------------------------


def session_client(
    *,
    is_staff: bool,
    is_active: bool = True,
    csrf: bool = False,
    project: Project | None = None,
    role: str = "sender",
) -> APIClient:
    """A logged-in session; with ``project``, a member of it in ``role``."""
    user = get_user_model().objects.create_user(
        username=f"user-{uuid.uuid4().hex[:8]}",
        password=None,  # unusable: force_login needs none, and hashing one is slow
        is_staff=is_staff,
        is_active=is_active,
    )
    if project is not None:
        add_member(user, project, role)
    client = APIClient(enforce_csrf_checks=csrf)
    client.default_format = "json"
    client.force_login(user)
    return client


@pytest.mark.parametrize("route", ROUTES[:-2], ids=ROUTE_IDS[:-2])
def test_a_staff_session_works_on_project_routes(broker, route):
    project = ProjectFactory()
    campaign = CampaignFactory(project=project)
    expected = {"get": 200, "post": 200, "patch": 200, "delete": 204}[route[0]]
    if route[1] == "":
        expected = 201 if route[0] == "post" else 200
    if route[1] == "/{id}/cancel":
        campaign.status = PushCampaign.Status.SENDING
        campaign.save(update_fields=["status"])

    client = session_client(is_staff=True, project=project)
    response = call(client, base(project.id), route, campaign.id)

    assert response.status_code == expected, response.content


def test_a_staff_session_on_the_alias_names_the_project(db):
    project = ProjectFactory()
    campaign = CampaignFactory(project=project)
    CampaignFactory(project=ProjectFactory())
    client = session_client(is_staff=True, project=project)

    listed = client.get("/admin/push", {"project_id": str(project.id)})
    unnamed = client.get("/admin/push")
    unknown = client.get("/admin/push", {"project_id": str(uuid.uuid4())})
    garbage = client.get("/admin/push", {"project_id": "nope"})

    assert [c["id"] for c in listed.json()["results"]] == [str(campaign.id)]
    assert unnamed.status_code == 400
    assert unnamed.json() == error(
        "VALIDATION_ERROR",
        "Staff sessions must name the project: ?project_id=<uuid>.",
        {"field": "project_id"},
    )
    for response in (unknown, garbage):
        assert response.status_code == 404
        assert response.json() == error("NOT_FOUND", "Project not found.")


def test_a_staff_session_on_an_unknown_project_is_not_found(db):
    response = session_client(is_staff=True).get(base(uuid.uuid4()))

    assert response.status_code == 404
    assert response.json() == error("NOT_FOUND", "Project not found.")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_a_session_that_is_not_active_staff_is_401(db_state, broker, route):
    project = ProjectFactory()
    campaign = CampaignFactory(project=project)
    before = db_state()

    for client in (session_client(is_staff=False), session_client(is_staff=True, is_active=False)):
        response = call(client, base(project.id), route, campaign.id)
        assert response.status_code == 401
        assert response.json() == error("UNAUTHENTICATED", "Authentication required.")
    assert db_state() == before
    assert broker.drain() == []


def test_a_staff_session_write_needs_the_csrf_token(db_state):
    project = ProjectFactory()
    client = session_client(is_staff=True, csrf=True)
    before = db_state()

    response = client.post(base(project.id), {"title": "t", "body": "b"})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"
    assert db_state() == before


# --- rate limit ----------------------------------------------------------------------


def clear_counters(ident: str) -> None:
    """This key's rate counters around NOW (the cache may be a Redis db shared with
    other runs, and a fresh test database reuses key ids)."""
    start = NOW.timestamp()
    keys = [counter_key(ident, Tier(0, 60), int((start + d) // 60)) for d in (0, 30, 61)]
    keys += [counter_key(ident, Tier(0, 1), int(start + d)) for d in range(0, 62)]
    cache.delete_many(keys)


@pytest.fixture
def limited(settings):
    """A fresh key limited to 3 requests a minute (no burst tier), with no history."""
    settings.HERALD_API_RATE_PER_MINUTE = 3
    settings.HERALD_API_BURST_PER_SECOND = 0
    project = ProjectFactory()
    key, raw = create_api_key(project)
    clear_counters(f"key:{key.pk}")
    yield project, api_client(raw)
    clear_counters(f"key:{key.pk}")


def test_over_the_rate_is_429_with_retry_after(limited, db_state):
    project, client = limited

    with time_machine.travel(NOW, tick=False):
        allowed = [client.get(base(project.id)) for _ in range(3)]
        before = db_state()
        limited_response = client.post(base(project.id), {"title": "t", "body": "b"})

    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [r["X-RateLimit-Remaining"] for r in allowed] == ["2", "1", "0"]
    assert allowed[0]["X-RateLimit-Limit"] == "3"
    assert allowed[0]["X-RateLimit-Reset"] == "60"
    assert allowed[0]["X-RateLimit-Policy"] == "3;w=60"
    assert limited_response.status_code == 429
    assert limited_response["Retry-After"] == "60"
    assert limited_response["X-RateLimit-Remaining"] == "0"
    assert limited_response.json() == error(
        "RATE_LIMITED",
        "Request was throttled. Expected available in 60 seconds.",
        {"retry_after": 60},
    )
    assert db_state() == before


def test_the_rate_limit_resets_with_the_minute(limited):
    project, client = limited

    with time_machine.travel(NOW, tick=False):
        for _ in range(3):
            client.get(base(project.id))
        assert client.get(base(project.id)).status_code == 429
    with time_machine.travel(NOW + timedelta(seconds=30), tick=False):
        response = client.get(base(project.id))
        assert response.status_code == 429
        assert response["Retry-After"] == "30"
    with time_machine.travel(NOW + timedelta(seconds=61), tick=False):
        assert client.get(base(project.id)).status_code == 200


def test_the_rate_limit_is_per_key(limited):
    project, client = limited
    other_key, other_raw = create_api_key(project)
    other = api_client(other_raw)
    clear_counters(f"key:{other_key.pk}")

    with time_machine.travel(NOW, tick=False):
        for _ in range(3):
            client.get(base(project.id))
        assert client.get(base(project.id)).status_code == 429
        assert other.get(base(project.id)).status_code == 200
    clear_counters(f"key:{other_key.pk}")


def test_burst_and_sustained_tiers_as_the_ocamba_reference_documents(settings):
    """10 a second and 150 a minute: the 11th request within a second waits for the
    next second; the 151st within a minute waits for the next minute."""
    settings.HERALD_API_BURST_PER_SECOND = 10
    settings.HERALD_API_RATE_PER_MINUTE = 150
    project = ProjectFactory()
    key, raw = create_api_key(project)
    clear_counters(f"key:{key.pk}")
    client = api_client(raw)
    url = base(project.id)

    with time_machine.travel(NOW, tick=False):
        first = [client.get(url) for _ in range(10)]
        burst = client.get(url)
    assert {r.status_code for r in first} == {200}
    assert first[0]["X-RateLimit-Policy"] == "10;w=1, 150;w=60"
    # The burst tier is the tight one until the minute's budget runs lower.
    assert (first[0]["X-RateLimit-Limit"], first[0]["X-RateLimit-Remaining"]) == ("10", "9")
    assert (burst.status_code, burst["Retry-After"]) == (429, "1")
    assert burst.json()["error"]["details"] == {"retry_after": 1}

    statuses = []
    for second in range(1, 15):  # 10 a second: 140 more, the minute's 150th is second 14's last
        with time_machine.travel(NOW + timedelta(seconds=second), tick=False):
            statuses += [client.get(url).status_code for _ in range(10)]
    assert statuses == [200] * 140
    with time_machine.travel(NOW + timedelta(seconds=15), tick=False):
        sustained = client.get(url)
    assert (sustained.status_code, sustained["Retry-After"]) == (429, "45")
    assert (sustained["X-RateLimit-Limit"], sustained["X-RateLimit-Remaining"]) == ("150", "0")
    with time_machine.travel(NOW + timedelta(seconds=60), tick=False):
        assert client.get(url).status_code == 200
    clear_counters(f"key:{key.pk}")
